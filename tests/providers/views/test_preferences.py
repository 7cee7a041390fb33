"""/settings/preferences/: preferred provider and default model, from connected providers."""

from __future__ import annotations

import pytest

from providers import services
from providers.models import UserSettings
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
URL = "/settings/preferences/"


@pytest.fixture
def connected(alice, catalog):
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    services.connection_create(
        user=alice,
        provider_id="my-llm",
        name="My LLM",
        api_key=None,
        base_url="http://127.0.0.1:1/v1",
        models=["tiny", "big"],
    )


def test_without_providers_it_says_to_connect_one(alice_client, settings):
    settings.DOCE_FREE_MODELS = False  # else OpenCode Zen's free models are offered
    assert "Connect a provider first." in alice_client.get(URL).content.decode()


def test_choices_are_the_connected_providers_models(alice_client, connected):
    html = alice_client.get(URL).content.decode()
    assert 'name="preferred_provider_id"' in html and 'name="default_model"' in html
    assert 'value="anthropic/claude-sonnet-4-6"' in html
    assert 'value="my-llm/tiny"' in html and 'value="my-llm/big"' in html
    assert "openai/" not in html  # not connected


def test_save(alice, alice_client, connected):
    response = alice_client.post(
        URL, {"preferred_provider_id": "my-llm", "default_model": "anthropic/claude-sonnet-4-6"}
    )
    assert response.status_code == 302
    row = UserSettings.objects.get(user=alice)
    assert (row.preferred_provider_id, row.default_model) == (
        "my-llm",
        "anthropic/claude-sonnet-4-6",
    )
    assert "Preferences saved." in alice_client.get(URL).content.decode()


@pytest.mark.parametrize(
    "data",
    [
        {"preferred_provider_id": "openai", "default_model": ""},
        {"preferred_provider_id": "", "default_model": "openai/gpt-5.5"},
        {"preferred_provider_id": "", "default_model": "my-llm/unknown"},
    ],
)
def test_choices_outside_the_connected_ones_are_refused(alice, alice_client, connected, data):
    response = alice_client.post(URL, data)
    assert response.status_code == 200
    assert "Select a valid choice." in response.content.decode()
    assert not UserSettings.objects.filter(user=alice).exclude(default_model="").exists()


def test_a_default_model_implies_its_provider(alice, alice_client, connected):
    alice_client.post(URL, {"preferred_provider_id": "", "default_model": "my-llm/tiny"})
    assert UserSettings.objects.get(user=alice).preferred_provider_id == "my-llm"


def test_the_legacy_openrouter_key_counts_as_connected(alice, alice_client):
    UserSettings.objects.create(user=alice, openrouter_api_key=new_key())
    html = alice_client.get(URL).content.decode()
    assert 'value="openrouter"' in html and 'value="openrouter/anthropic/claude-sonnet-4.6"' in html
