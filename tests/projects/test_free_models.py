"""OpenCode Zen's free models (provider ``opencode``): offered to every user with no key
connected (DOCE_FREE_MODELS), and the pipeline then injects nothing for them."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from projects import credentials as project_credentials
from projects import services as project_services
from projects.models import Project
from providers import services
from providers.catalog import catalog_store, free_models
from providers.catalog.fetch import trim_catalog
from providers.services import CredentialUnavailable, credential_for

pytestmark = pytest.mark.django_db

# What GET /provider answers for "opencode" on OpenCode 1.18.33 with a Zen key (without
# one it lists only the free models, with options.apiKey "public").
ZEN = {
    "id": "opencode",
    "name": "OpenCode Zen",
    "env": ["OPENCODE_API_KEY"],
    "options": {},
    "models": {
        "big-pickle": {
            "name": "Big Pickle",
            "release_date": "2025-10-17",
            "cost": {"input": 0, "output": 0, "cache": {"read": 0, "write": 0}},
        },
        "space-bunny-free": {
            "name": "Space Bunny Free",
            "release_date": "2026-09-23",
            "cost": {"input": 0, "output": 0},
        },
        "claude-opus-4-7": {
            "name": "Claude Opus 4.7",
            "release_date": "2026-04-01",
            "cost": {"input": 5, "output": 25},
        },
        "half-free": {"name": "Half", "cost": {"input": 0, "output": 1}},
        "no-cost-said": {"name": "Unknown cost"},
    },
}
OTHER = {
    "id": "zeta-ai",
    "name": "Zeta AI",
    "options": {"apiKey": "public"},
    "models": {"z-free": {"name": "Z", "cost": {"input": 0, "output": 0}}},
}


def _create(client, model: str):
    return client.post("/projects/new/", {"prompt": "Build a site", "model": model})


def test_only_zen_models_that_cost_nothing_are_free():
    entries = {e["id"]: e for e in trim_catalog({"all": [ZEN, OTHER]}, {})}
    assert entries["opencode"]["free_models"] == ["space-bunny-free", "big-pickle"]
    assert entries["zeta-ai"]["free_models"] == []  # a key is still needed there
    catalog_store(list(entries.values()))
    assert free_models() == {"space-bunny-free": "Space Bunny Free", "big-pickle": "Big Pickle"}


def test_the_built_in_list_knows_them_before_any_fetch(settings):
    assert free_models()["big-pickle"] == "Big Pickle"
    settings.DOCE_FREE_MODELS = False
    assert free_models() == {}


def test_a_user_with_no_connection_creates_a_project_on_a_free_model(alice, alice_client):
    html = alice_client.get("/projects/new/").content.decode()
    assert 'name="prompt"' in html and 'value="opencode/big-pickle"' in html  # suggested
    response = _create(alice_client, "opencode/big-pickle")
    assert response.status_code == 302
    project = Project.objects.get()
    assert (project.current_model_provider_id, project.current_model_id) == (
        "opencode",
        "big-pickle",
    )


def test_a_paid_zen_model_needs_a_key(alice_client):
    catalog_store(trim_catalog({"all": [ZEN]}, {}))
    response = _create(alice_client, "opencode/claude-opus-4-7")
    assert "is not one of OpenCode Zen&#x27;s free models" in response.content.decode()
    assert not Project.objects.exists()


def test_with_a_zen_key_every_zen_model_goes(alice, alice_client):
    catalog_store(trim_catalog({"all": [ZEN]}, {}))
    services.connection_create(user=alice, provider_id="opencode", api_key="sk-zen-" + "z" * 30)
    assert _create(alice_client, "opencode/claude-opus-4-7").status_code == 302


def test_turned_off_they_are_not_offered(alice_client, settings):
    settings.DOCE_FREE_MODELS = False
    response = _create(alice_client, "opencode/big-pickle")
    assert "Connect an LLM provider first" in response.content.decode()
    assert not Project.objects.exists()


def test_the_credential_step_injects_nothing_for_them(alice, project, monkeypatch, settings):
    project.current_model_provider_id, project.current_model_id = "opencode", "big-pickle"
    project.save()
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=alice, provider_id="opencode")
    assert error.value.reason == CredentialUnavailable.KEYLESS_ENDPOINT

    calls = []

    class Client:  # records what the step asks of the project's server
        def __getattr__(self, name):
            return lambda *args, **kwargs: calls.append(name)

    @contextmanager
    def client(project, **options):
        yield Client()

    monkeypatch.setattr(project_services, "project_client", client)
    project_credentials.inject(project=project, dispose=False)
    project.refresh_from_db()
    assert project.provider_credentials_set and calls == []  # no PUT /auth

    settings.DOCE_FREE_MODELS = False
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=alice, provider_id="opencode")
    assert error.value.reason == "missing"


def test_a_zen_key_once_connected_is_injected(alice):
    services.connection_create(user=alice, provider_id="opencode", api_key="sk-zen-" + "z" * 30)
    credential = credential_for(user=alice, provider_id="opencode").credential
    assert credential.to_json() == {"type": "api", "key": "sk-zen-" + "z" * 30}


def test_preferences_offer_them_too(alice_client):
    html = alice_client.get("/settings/preferences/").content.decode()
    assert 'value="opencode/big-pickle"' in html and "OpenCode Zen" in html
