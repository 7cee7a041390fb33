"""Model access where a model is chosen (the picker and ``ModelField``, for a new project
and a model change) and in the project's opencode.json (``project_spec``)."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group

from doce.opencode.runtimes.config import render_opencode_config
from projects import services
from projects.forms import ModelChangeForm, ProjectCreateForm
from projects.models import Project
from projects.selectors import model_choices
from providers.models import ModelAccess
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db

ALLOW, DENY = ModelAccess.Effect.ALLOW, ModelAccess.Effect.DENY


@pytest.fixture
def alice_stub2(alice):
    """Alice's endpoint ``stub`` with two models."""
    return ProviderConnectionFactory(
        user=alice,
        provider_id="stub",
        name="Stub",
        base_url="http://127.0.0.1:9/v1",
        models=["stub-model", "big-model"],
        prices={"input": "3", "output": "15"},
        api_key="sk-stub-" + "k" * 24,
    )


@pytest.fixture
def limited(alice, alice_stub2):
    """Alice may use stub/stub-model only."""
    return ModelAccess.objects.create(user=alice, effect=ALLOW, pattern="stub/stub-model")


def offered(groups) -> list[str]:
    return [option.value for group in groups for option in group.options]


def test_the_picker_offers_only_what_the_rules_allow(alice, limited):
    groups = model_choices(user=alice)
    assert offered(groups) == ["stub/stub-model"]
    assert groups[0].label == "Stub — your key"
    assert groups[0].options[0].label == "stub-model · $3 / $15 per M tokens"


def test_without_rules_the_picker_groups_own_keys_then_free_models(alice, alice_stub2):
    groups = model_choices(user=alice)
    assert [g.label for g in groups] == ["Stub — your key", "OpenCode Zen — free models"]
    assert offered(groups)[:2] == ["stub/stub-model", "stub/big-model"]
    assert "opencode/big-pickle" in offered(groups)
    assert groups[1].options[0].label.endswith(" · free")


def test_a_group_rule_hides_a_whole_provider(alice, alice_stub2):
    interns = Group.objects.create(name="interns")
    interns.user_set.add(alice)
    ModelAccess.objects.create(group=interns, effect=DENY, pattern="opencode")
    assert [g.provider_id for g in model_choices(user=alice)] == ["stub"]


@pytest.mark.parametrize("form_class", [ProjectCreateForm, ModelChangeForm])
def test_a_limited_user_cannot_pick_another_model(alice, limited, form_class):
    for model in ("stub/big-model", "opencode/big-pickle"):
        form = form_class({"prompt": "A site", "model": model}, user=alice)
        assert not form.is_valid()
        assert form.errors["model"] == [
            f"Your administrator does not let you use {model}. Pick another model."
        ]
    form = form_class({"prompt": "A site", "model": "stub/stub-model"}, user=alice)
    assert form.is_valid(), form.errors


def test_the_other_model_text_is_checked_too(alice, limited):
    data = {"prompt": "A site", "model": "other", "model_other": "stub/big-model"}
    form = ProjectCreateForm(data, user=alice)
    assert not form.is_valid() and "does not let you use stub/big-model" in form.errors["model"][0]
    data["model_other"] = "stub/stub-model"
    form = ProjectCreateForm(data, user=alice)
    assert form.is_valid() and form.cleaned_data["model"] == "stub/stub-model"


def test_a_plain_post_creates_the_project_with_the_picked_model(alice_client, alice_stub2):
    """What a browser without JavaScript sends: the select's value."""
    page = alice_client.get("/projects/new/").content.decode()
    assert re.search(r'<select name="model"[^>]*data-model-picker', page)
    assert '<optgroup label="Stub — your key">' in page
    assert 'name="model_other"' in page and "model-suggestions" not in page
    response = alice_client.post("/projects/new/", {"prompt": "A site", "model": "stub/big-model"})
    assert response.status_code == 302
    assert Project.objects.get().model == "stub/big-model"


def test_an_unknown_providers_model_is_typed(alice, alice_client):
    """A provider whose models doce does not know stays usable through "Other model"."""
    ProviderConnectionFactory(user=alice, provider_id="newcomer", api_key="sk-" + "n" * 30)
    page = alice_client.get("/projects/new/").content.decode()
    assert "models of newcomer — your key" in page
    data = {"prompt": "A site", "model": "other", "model_other": "newcomer/model-9"}
    response = alice_client.post("/projects/new/", data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    assert Project.objects.get().model == "newcomer/model-9"


def test_a_refused_model_is_a_readable_error_on_the_page(alice_client, limited):
    response = alice_client.post("/projects/new/", {"prompt": "A site", "model": "stub/big-model"})
    assert response.status_code == 200
    assert "Your administrator does not let you use stub/big-model" in response.content.decode()
    assert not Project.objects.exists()


def test_the_model_change_is_refused_too(alice_client, limited, project):
    response = alice_client.post(
        f"/projects/{project.pk}/model/", {"model": "stub/big-model"}, follow=True
    )
    assert "does not let you use stub/big-model" in response.content.decode()
    project.refresh_from_db()
    assert project.model == "stub/stub-model"


def test_the_project_page_shows_the_current_model_selected(alice_client, alice_stub2, project):
    page = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert '<option value="stub/stub-model" selected>' in page


def test_the_projects_opencode_json_carries_the_limits(alice, limited, project):
    config = render_opencode_config(services.project_spec(project), {})
    assert config["enabled_providers"] == ["stub"]
    assert config["provider"]["stub"]["whitelist"] == ["stub-model"]
    assert "disabled_providers" not in config


def test_without_rules_opencode_json_has_no_limits(alice, alice_stub2, project):
    config = render_opencode_config(services.project_spec(project), {})
    assert "enabled_providers" not in config and "whitelist" not in str(config)
