"""The services the settings pages call: set a key (create or replace, race included),
record what the provider said, verify, preferences."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from providers import services
from providers.models import AuditEvent, ProviderConnection, UserSettings
from providers.validation import REJECTED, UNCHECKED, UNVERIFIED, VALID, KeyCheck
from tests.providers_ui.conftest import new_key

pytestmark = pytest.mark.django_db


def test_set_api_key_creates_then_replaces_and_ignores_the_same_key(alice):
    key = new_key()
    connection, created = services.connection_set_api_key(
        user=alice, provider_id="openrouter", api_key=key, metadata={}
    )
    assert created and connection.api_key == key
    same, created = services.connection_set_api_key(
        user=alice, provider_id="openrouter", api_key=f" {key} ", metadata={}
    )
    assert not created and same.pk == connection.pk
    assert not AuditEvent.objects.filter(action="updated").exists()  # nothing changed
    other = new_key()
    services.connection_set_api_key(user=alice, provider_id="openrouter", api_key=other)
    connection.refresh_from_db()
    assert connection.api_key == other
    assert AuditEvent.objects.filter(action="updated").count() == 1


def test_set_api_key_replaces_oauth_tokens_and_revives_a_revoked_connection(alice):
    connection = services.connection_create(
        user=alice, provider_id="openai", auth_type="oauth",
        oauth_access_token="a" * 20, oauth_refresh_token="r" * 20,
    )  # fmt: skip
    services.connection_revoke(connection=connection, reason="test")
    key = new_key("sk-")
    services.connection_set_api_key(user=alice, provider_id="openai", api_key=key)
    connection.refresh_from_db()
    assert (connection.auth_type, connection.status, connection.api_key) == (
        "api",
        "connected",
        key,
    )
    assert connection.oauth_access_token is None and connection.oauth_refresh_token is None


def test_set_api_key_survives_a_concurrent_create(alice, monkeypatch):
    """Two requests both see no connection; the second one's create hits the unique
    constraint and becomes an update."""
    real_create = services.connection_create
    first_key, second_key = new_key(), new_key()

    def racing_create(**kwargs):
        real_create(user=alice, provider_id="openrouter", api_key=first_key)  # the other one
        return real_create(**kwargs)

    monkeypatch.setattr(services, "connection_create", racing_create)
    connection, created = services.connection_set_api_key(
        user=alice, provider_id="openrouter", api_key=second_key
    )
    assert not created and connection.api_key == second_key
    assert ProviderConnection.objects.filter(user=alice).count() == 1


def test_set_api_key_reports_other_validation_errors(alice):
    with pytest.raises(ValidationError) as error:
        services.connection_set_api_key(user=alice, provider_id="Not Valid", api_key=new_key())
    assert "provider_id" in error.value.message_dict


def test_record_check(alice):
    connection = services.connection_create(user=alice, provider_id="groq", api_key=new_key())
    services.connection_record_check(connection=connection, check=KeyCheck(UNCHECKED))
    assert not AuditEvent.objects.filter(action__startswith="validat").exists()

    services.connection_record_check(
        connection=connection, check=KeyCheck(UNVERIFIED, "Groq did not answer in time")
    )
    connection.refresh_from_db()
    assert connection.status == "connected" and connection.last_validated_at is None
    assert connection.error_message.startswith("Not verified: Groq did not answer in time.")

    services.connection_record_check(
        connection=connection, check=KeyCheck(REJECTED, "Groq rejected the key (401): no")
    )
    connection.refresh_from_db()
    assert connection.status == "error" and connection.error_message.endswith("(401): no")

    services.connection_record_check(connection=connection, check=KeyCheck(VALID))
    connection.refresh_from_db()
    assert (connection.status, connection.error_message) == ("connected", "")
    assert connection.last_validated_at is not None


def test_a_valid_check_does_not_revive_a_revoked_connection(alice):
    connection = services.connection_create(user=alice, provider_id="groq", api_key=new_key())
    services.connection_revoke(connection=connection, reason="operator")
    services.connection_record_check(connection=connection, check=KeyCheck(VALID))
    connection.refresh_from_db()
    assert connection.status == "revoked"


def test_verify_skips_the_provider_for_revoked_and_keyless_connections(alice, provider_api):
    revoked = services.connection_create(user=alice, provider_id="groq", api_key=new_key())
    services.connection_revoke(connection=revoked, reason="operator")
    keyless = services.connection_create(
        user=alice, provider_id="mine", name="Mine", base_url=provider_api.url + "/v1",
        models=["m"],
    )  # fmt: skip
    assert services.connection_verify(connection=revoked)[1] is None
    connection, check = services.connection_verify(connection=keyless)
    assert check is None and connection.status == "connected"
    assert provider_api.seen == []


def test_preferences_update_creates_the_settings_row(alice):
    row = services.preferences_update(
        user=alice, preferred_provider_id="anthropic", default_model="anthropic/claude-sonnet-4-6"
    )
    assert UserSettings.objects.get(user=alice) == row
    assert row.default_model == "anthropic/claude-sonnet-4-6"
