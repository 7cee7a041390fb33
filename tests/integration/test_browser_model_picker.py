"""The model picker in Chromium: a select grouped by provider, a filter box (the static
doce/model_picker.js, under the site's Content-Security-Policy) that hides what does not
match, and a submit that creates the project on the picked model. Without JavaScript the
same form is a plain select: tests/projects/test_model_access.py posts it as a browser
without scripts would."""

import pytest

from projects.models import Project
from providers.models import ModelAccess
from tests.factories import DEFAULT_PASSWORD, ProviderConnectionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

VISIBLE = "select => Array.from(select.options).filter(o => !o.hidden).map(o => o.value)"
GROUPS = "select => Array.from(select.querySelectorAll('optgroup')).map(g => g.label)"


def log_in(page, live_server, username="alice"):
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")


@pytest.fixture
def alice_endpoint(alice):
    return ProviderConnectionFactory(
        user=alice,
        provider_id="stub",
        name="Stub",
        base_url="http://127.0.0.1:9/v1",
        models=["stub-model", "big-model", "tiny-model"],
        prices={"input": "3", "output": "15"},
        api_key="sk-stub-" + "k" * 24,
    )


def test_pick_a_model_by_filtering_and_create_the_project(page, live_server, alice_endpoint):
    log_in(page, live_server)
    page.goto(live_server.url + "/projects/new/")
    select = page.locator("select#id_model")
    assert select.evaluate(GROUPS) == ["Stub — your key", "OpenCode Zen — free models"]
    assert select.locator("option", has_text="big-model · $3 / $15 per M tokens").count() == 1
    assert page.locator("#id_model_other").is_hidden()  # shown only for "Other model"

    page.fill("[data-model-filter]", "big-model")
    assert select.evaluate(VISIBLE) == ["stub/big-model", "other"]
    assert select.evaluate(GROUPS) == ["Stub — your key", "OpenCode Zen — free models"]
    assert page.locator("optgroup[label^='OpenCode Zen']").evaluate("g => g.hidden") is True
    assert select.input_value() == "stub/big-model"  # the first match is picked

    page.fill("[data-model-filter]", "no such model")
    assert select.evaluate(VISIBLE) == ["other"]
    assert page.get_by_text("No model matches").is_visible()
    page.fill("[data-model-filter]", "")
    assert len(select.evaluate(VISIBLE)) > 4

    page.fill("#id_prompt", "Build a site for my bakery")
    select.select_option("stub/tiny-model")
    page.get_by_role("button", name="Create project").click()
    page.wait_for_url("**/projects/*/")
    assert Project.objects.get().model == "stub/tiny-model"


def test_other_model_is_typed_and_a_refused_one_is_a_form_error(page, live_server, alice_endpoint):
    ModelAccess.objects.create(user=alice_endpoint.user, effect="deny", pattern="stub/big-model")
    log_in(page, live_server)
    page.goto(live_server.url + "/projects/new/")
    select = page.locator("select#id_model")
    assert "stub/big-model" not in select.evaluate(VISIBLE)  # not offered at all
    select.select_option("other")
    assert page.locator("#id_model_other").is_visible()
    page.fill("#id_model_other", "stub/big-model")  # typed anyway
    page.fill("#id_prompt", "Build a site for my bakery")
    page.get_by_role("button", name="Create project").click()
    page.get_by_text("Your administrator does not let you use stub/big-model").wait_for()
    assert not Project.objects.exists()
    assert select.input_value() == "other"  # the typed text is kept
    assert page.locator("#id_model_other").input_value() == "stub/big-model"
