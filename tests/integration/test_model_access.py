"""Model access against the real binary: a user allowed one model gets an opencode.json
whose server offers that model only (docs/providers.md, "Model access").

The project's spec is what ``projects.services.project_spec`` makes for it (the owner's
rules as ``enabled_providers`` and the provider's ``whitelist``); OpenCode itself then
says what it offers (``GET /config/providers``, ``GET /provider``)."""

from __future__ import annotations

import dataclasses

import pytest

from doce.opencode import ApiKeyCredential
from projects import services as project_services
from projects.models import Project
from providers.models import ModelAccess
from tests.doce.opencode.servers import running_server
from tests.factories import ProviderConnectionFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def project_of(user, model: str) -> Project:
    provider_id, _, model_id = model.partition("/")
    return Project.objects.create(
        owner=user,
        name="Bakery",
        prompt="Build a site for my bakery",
        current_model_provider_id=provider_id,
        current_model_id=model_id,
        server_password="pw-" + "x" * 30,
    )


def offered(server) -> tuple[dict[str, set[str]], set[str]]:
    """``({provider id: model ids}, connected ids)`` as the server has them."""
    with server.client() as client:
        active = client._json("GET", "/config/providers")
        connected = set(client.providers()["connected"])
    return {p["id"]: set(p["models"]) for p in active["providers"]}, connected


@pytest.fixture
def alice_endpoint(alice):
    return ProviderConnectionFactory(
        user=alice,
        provider_id="stub",
        name="Stub",
        base_url="http://127.0.0.1:9/v1",
        models=["stub-model", "big-model"],
        api_key="sk-stub-" + "k" * 24,
    )


def test_a_user_allowed_one_model_gets_a_server_that_offers_only_it(
    alice, alice_endpoint, tmp_path
):
    ModelAccess.objects.create(user=alice, effect="allow", pattern="stub/stub-model")
    project = project_of(alice, "stub/stub-model")
    spec = dataclasses.replace(project_services.project_spec(project), data_dir=tmp_path / "p")
    with running_server(spec) as server:
        with server.client() as client:  # a key of another provider is not enough
            client.set_auth("openrouter", ApiKeyCredential(key="sk-or-v1-" + "o" * 40))
        providers, connected = offered(server)
    assert providers == {"stub": {"stub-model"}}
    assert connected == {"stub"}  # not OpenCode Zen's free models, not openrouter


def test_a_deny_rule_takes_a_model_and_a_provider_out(alice, alice_endpoint, tmp_path):
    ModelAccess.objects.create(user=alice, effect="deny", pattern="stub/big-model")
    ModelAccess.objects.create(user=alice, effect="deny", pattern="opencode")
    project = project_of(alice, "stub/stub-model")
    spec = dataclasses.replace(project_services.project_spec(project), data_dir=tmp_path / "p")
    with running_server(spec) as server:
        providers, _connected = offered(server)
    assert providers == {"stub": {"stub-model"}}  # no free models, no big-model


def test_without_rules_the_server_offers_everything(alice, alice_endpoint, tmp_path):
    project = project_of(alice, "stub/stub-model")
    spec = dataclasses.replace(project_services.project_spec(project), data_dir=tmp_path / "p")
    with running_server(spec) as server:
        providers, _connected = offered(server)
    assert providers["stub"] == {"stub-model", "big-model"}
    assert "big-pickle" in providers["opencode"]  # the control: the rules above did it
