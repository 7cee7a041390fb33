"""The preferred provider: set by the first connection, and /projects/new/ starts with
its model (the user's default model first)."""

from __future__ import annotations

import re

import pytest

from providers import services
from providers.models import UserSettings
from tests.factories import UserSettingsFactory

pytestmark = pytest.mark.django_db


def preferred(user) -> str:
    return UserSettings.objects.values_list("preferred_provider_id", flat=True).get(user=user)


def preselected(client) -> str | None:
    """The model the picker starts with: its selected option, or the "Other model" text."""
    html = client.get("/projects/new/").content.decode()
    picker = re.search(r'<select[^>]*name="model"[^>]*>.*?</select>', html, re.S).group()
    value = re.search(r'<option value="([^"]*)"[^>]* selected', picker)
    if value and value.group(1) == "other":
        field = re.search(r'<input[^>]*name="model_other"[^>]*>', html).group()
        value = re.search(r'value="([^"]*)"', field)
    return value.group(1) if value else None


def test_the_first_connection_becomes_the_preferred_provider(alice):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-" + "a" * 30)
    assert preferred(alice) == "anthropic"
    services.connection_create(user=alice, provider_id="openai", api_key="sk-" + "o" * 30)
    assert preferred(alice) == "anthropic"  # the second one does not take over


def test_an_existing_settings_row_without_a_preference_gets_one(alice):
    UserSettingsFactory(user=alice, preferred_provider_id="")
    services.connection_create(user=alice, provider_id="groq", api_key="gsk_" + "g" * 30)
    assert preferred(alice) == "groq"


def test_a_chosen_preference_stays(alice):
    UserSettingsFactory(user=alice, preferred_provider_id="openai")
    services.connection_create(user=alice, provider_id="groq", api_key="gsk_" + "g" * 30)
    assert preferred(alice) == "openai"


def test_the_new_project_form_starts_with_the_preferred_providers_default(alice, alice_client):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-" + "a" * 30)
    assert preselected(alice_client) == "anthropic/claude-sonnet-4-6"  # the catalog's default


def test_a_custom_endpoint_starts_with_its_first_model(alice, alice_client):
    services.connection_create(
        user=alice,
        provider_id="my-llm",
        name="Mine",
        base_url="http://127.0.0.1:9/v1",
        models=["tiny", "big"],
    )
    assert preselected(alice_client) == "my-llm/tiny"


def test_the_default_model_wins_while_its_provider_is_usable(alice, alice_client):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-" + "a" * 30)
    anthropic_only = "anthropic/claude-opus-4-7"
    UserSettings.objects.filter(user=alice).update(default_model=anthropic_only)
    assert preselected(alice_client) == anthropic_only
    UserSettings.objects.filter(user=alice).update(default_model="openai/gpt-5.5")
    assert preselected(alice_client) == "anthropic/claude-sonnet-4-6"  # openai: not connected


def test_a_disconnected_preference_preselects_nothing(alice, alice_client):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key="sk-ant-" + "a" * 30
    )
    services.connection_create(user=alice, provider_id="groq", api_key="gsk_" + "g" * 30)
    services.connection_delete(connection=connection)
    assert preselected(alice_client) is None


def test_a_preferred_free_provider_starts_with_a_free_model(alice, alice_client):
    UserSettingsFactory(user=alice, preferred_provider_id="opencode")
    assert preselected(alice_client) == "opencode/big-pickle"


def test_a_posted_model_is_kept(alice, alice_client):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-" + "a" * 30)
    response = alice_client.post("/projects/new/", {"prompt": "", "model": "anthropic/x y"})
    assert 'value="anthropic/x y"' in response.content.decode()


def test_a_default_zen_model_is_kept_only_while_it_can_be_used(alice, alice_client):
    UserSettingsFactory(user=alice, default_model="opencode/big-pickle")
    assert preselected(alice_client) == "opencode/big-pickle"  # free: no key needed
    UserSettings.objects.filter(user=alice).update(default_model="opencode/claude-opus-4-7")
    assert preselected(alice_client) is None  # a paid one needs a Zen key
