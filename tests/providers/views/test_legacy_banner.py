"""The banner for users still on the old OpenRouter key, and its one-click migration."""

from __future__ import annotations

import pytest

from providers import services
from providers.models import AuditEvent, ProviderConnection, UserSettings
from providers.services import credential_for
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
BANNER = "You are using the old API key system"


@pytest.fixture
def legacy_key(alice):
    key = new_key()
    UserSettings.objects.create(user=alice, openrouter_api_key=key)
    return key


def test_shown_to_a_user_with_only_the_old_key(alice_client, legacy_key):
    html = alice_client.get("/settings/providers/").content.decode()
    assert BANNER in html and 'action="/settings/providers/legacy/migrate/"' in html
    assert legacy_key not in html


def test_not_shown_without_an_old_key_or_with_an_openrouter_connection(alice, alice_client):
    assert BANNER not in alice_client.get("/settings/providers/").content.decode()
    UserSettings.objects.create(user=alice, openrouter_api_key=new_key())
    services.connection_create(user=alice, provider_id="openrouter", api_key=new_key())
    assert BANNER not in alice_client.get("/settings/providers/").content.decode()


def test_the_old_key_keeps_working_until_migrated(alice, legacy_key):
    assert (
        credential_for(user=alice, provider_id="openrouter").credential.to_json()["key"]
        == legacy_key
    )


def test_one_click_migrates_and_keeps_the_legacy_value(alice, alice_client, legacy_key):
    response = alice_client.post("/settings/providers/legacy/migrate/", follow=True)
    html = response.content.decode()
    assert BANNER not in html and 'data-provider-id="openrouter"' in html
    assert "now is a provider connection" in html
    connection = ProviderConnection.objects.get(user=alice, provider_id="openrouter")
    assert connection.api_key == legacy_key
    row = UserSettings.objects.get(user=alice)
    assert row.migration_completed_at is not None and row.openrouter_api_key == legacy_key
    assert AuditEvent.objects.filter(action="migrated", user=alice).exists()
    credential = credential_for(user=alice, provider_id="openrouter")
    assert (
        credential.source == "connection" and credential.credential.to_json()["key"] == legacy_key
    )
    again = alice_client.post("/settings/providers/legacy/migrate/", follow=True)
    assert "There was no old key to migrate." in again.content.decode()
    assert ProviderConnection.objects.filter(user=alice).count() == 1


def test_migrating_is_post_only_and_for_oneself(alice, bob, alice_client, legacy_key):
    UserSettings.objects.create(user=bob, openrouter_api_key=new_key())
    assert alice_client.get("/settings/providers/legacy/migrate/").status_code == 405
    alice_client.post("/settings/providers/legacy/migrate/")
    assert not ProviderConnection.objects.filter(user=bob).exists()
    assert UserSettings.objects.get(user=bob).migration_completed_at is None
