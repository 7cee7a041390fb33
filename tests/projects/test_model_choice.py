"""The model picked on /projects/new/ and /projects/<id>/model/: OpenCode's id rules, and
a model the provider offers."""

import pytest

from projects.forms import ModelChangeForm, ProjectCreateForm
from projects.models import Project
from providers.catalog import catalog_store
from providers.models import UserSettings

pytestmark = pytest.mark.django_db

OPENROUTER = {
    "id": "openrouter",
    "name": "OpenRouter",
    "models": [["anthropic/claude-sonnet-4.6", "Claude Sonnet 4.6"], ["qwen/qwen3-coder", "Qwen"]],
}
ANTHROPIC = {"id": "anthropic", "name": "Anthropic", "models": [["claude-opus-4-7", "Opus"]]}


@pytest.fixture
def legacy_key(alice):
    """Alice has only the old plaintext-era OpenRouter key, not migrated yet."""
    return UserSettings.objects.create(user=alice, openrouter_api_key="sk-or-v1-" + "a" * 40)


def _create_error(client, model: str) -> str | None:
    """The form's error for ``model`` on /projects/new/, or None when it was taken."""
    response = client.post("/projects/new/", {"prompt": "Build a site", "model": model})
    if response.status_code == 302:
        return None
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert list(errors) == ["model"], errors
    return " ".join(errors["model"])


def _change_error(client, project: Project, model: str) -> str | None:
    """The message /projects/<id>/model/ answers for ``model``, or None when it changed."""
    before = Project.objects.values_list("current_model_id", flat=True).get(pk=project.pk)
    response = client.post(f"/projects/{project.pk}/model/", {"model": model}, follow=True)
    texts = [str(message) for message in response.context["messages"]]
    after = Project.objects.get(pk=project.pk)
    if after.model == model:
        assert texts == [f"Model changed to {model}."]
        return None
    assert after.current_model_id == before
    return " ".join(texts)


@pytest.mark.parametrize(
    ("model", "error"),
    [
        ("stub/stub model", "no spaces, line breaks or control characters"),
        ("stub/stub\nmodel", "no spaces, line breaks or control characters"),
        ("stub/stub\tmodel", "no spaces, line breaks or control characters"),
        ("stub/stub\x07model", "no spaces, line breaks or control characters"),
        ("stub/stub\u200bmodel", "no spaces, line breaks or control characters"),
        ("stub/stub\u00a0model", "no spaces, line breaks or control characters"),
        ("stub/../stub-model", "cannot contain “..” as a path segment"),
        ("stub/a/../../b", "cannot contain “..” as a path segment"),
        ("stub/..\\etc", "cannot contain “..” as a path segment"),
        ("stub/" + "m" * 256, "256 characters long: at most 255 are allowed"),
        # OpenCode would expand these in opencode.json (a variable, a file's content).
        ("stub/{env:OPENCODE_SERVER_PASSWORD}", "cannot contain “{env:” or “{file:”"),
        ("stub/{FILE:auth.json}", "cannot contain “{env:” or “{file:”"),
        ("stub/gpt-4o", "“gpt-4o” is not a model of Stub: pick one from the list"),
    ],
)
def test_bad_model_ids_are_refused_on_both_forms(
    alice_client, alice_stub, alice_project, model, error
):
    assert error in _create_error(alice_client, model)
    assert not Project.objects.exclude(pk=alice_project.pk).exists()
    assert error in _change_error(alice_client, alice_project, model)


def test_a_custom_endpoints_own_models_are_taken(alice_client, alice_stub, alice_project):
    alice_stub.models = ["stub-model", "vendor/big-model:free"]
    alice_stub.save()
    assert _change_error(alice_client, alice_project, "stub/vendor/big-model:free") is None
    assert _create_error(alice_client, "stub/vendor/big-model:free") is None
    assert Project.objects.exclude(pk=alice_project.pk).get().current_model_id == (
        "vendor/big-model:free"
    )


def test_a_catalog_provider_offers_the_stored_catalogs_models(alice_client, alice, legacy_key):
    catalog_store([OPENROUTER, ANTHROPIC])
    assert _create_error(alice_client, "openrouter/anthropic/claude-made-up") == (
        "“anthropic/claude-made-up” is not a model of OpenRouter: pick one from the list."
    )
    assert _create_error(alice_client, "openrouter/claude-opus-4-7") is not None
    assert not Project.objects.exists()
    # The legacy key alone is enough to pick an OpenRouter model.
    assert _create_error(alice_client, "openrouter/anthropic/claude-sonnet-4.6") is None
    assert Project.objects.get().model == "openrouter/anthropic/claude-sonnet-4.6"


def test_a_provider_the_stored_catalog_lacks_takes_any_well_formed_id(alice, legacy_key):
    catalog_store([ANTHROPIC])  # fetched, but without OpenRouter
    assert ProjectCreateForm(
        {"prompt": "p", "model": "openrouter/vendor/new-model"}, user=alice
    ).is_valid()
    for model in ("openrouter/" + "a" * 255, "openrouter/x/../y", "openrouter/a b"):
        form = ModelChangeForm({"model": model}, user=alice)
        assert form.is_valid() == (model == "openrouter/" + "a" * 255), form.errors


def test_before_any_catalog_fetch_the_built_in_list_does_not_limit_models(alice, legacy_key):
    # The built-in list names a few models per provider; OpenCode knows many more.
    form = ModelChangeForm({"model": "openrouter/anthropic/claude-sonnet-4"}, user=alice)
    assert form.is_valid(), form.errors
    form = ModelChangeForm({"model": "openrouter/" + "a" * 256}, user=alice)
    assert not form.is_valid()


def test_spaces_around_the_value_are_dropped(alice, alice_stub):
    form = ModelChangeForm({"model": "  stub/stub-model\n"}, user=alice)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["model"] == "stub/stub-model"


def test_an_unconnected_provider_is_still_named_as_such(alice, alice_stub):
    catalog_store([ANTHROPIC])
    form = ModelChangeForm({"model": "anthropic/claude-opus-4-7"}, user=alice)
    assert not form.is_valid()
    assert "is not connected" in form.errors["model"][0]
