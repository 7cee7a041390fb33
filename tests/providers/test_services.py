"""connection_create / update / revoke / delete / revalidate / mark_error and their audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from doce import keyring
from providers import services
from providers.credentials import opencode_credential
from providers.models import AuditEvent, ProviderConnection, UserSettings
from providers.validation import REJECTED, UNCHECKED, UNVERIFIED, VALID, KeyCheck
from tests.providers.conftest import WRONG_KEY, new_key, raw_connection_value

pytestmark = pytest.mark.django_db

ANTHROPIC_KEY = "sk-ant-api03-" + "a" * 40 + "f3a9"


def events(**filters):
    return list(AuditEvent.objects.filter(**filters).order_by("id"))


def test_create_encrypts_hints_audits_and_initializes_settings(alice):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key=f"  {ANTHROPIC_KEY}\n"
    )
    assert connection.api_key == ANTHROPIC_KEY  # stripped
    assert connection.key_hint == "sk-ant-…f3a9"
    assert connection.status == "connected"
    assert keyring.decrypt(raw_connection_value(connection.pk, "api_key")) == ANTHROPIC_KEY
    [event] = events(connection=connection)
    assert (event.action, event.user, event.actor, event.actor_name) == (
        "connected",
        alice,
        alice,
        "alice",
    )
    assert ANTHROPIC_KEY not in str(event.detail)
    assert UserSettings.objects.get(user=alice).provider_auth_initialized is True


def test_each_user_has_their_own_connection_and_one_per_provider(alice, bob):
    services.connection_create(user=alice, provider_id="anthropic", api_key=ANTHROPIC_KEY)
    services.connection_create(user=bob, provider_id="anthropic", api_key=ANTHROPIC_KEY + "b")
    with pytest.raises(ValidationError) as error:
        services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-other-1")
    assert error.value.message_dict == {"provider_id": ["anthropic is already connected."]}
    assert ProviderConnection.objects.filter(provider_id="anthropic").count() == 2


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"provider_id": "Not Valid!", "api_key": "sk-123456789"}, "provider_id"),
        ({"provider_id": "anthropic", "api_key": "   "}, "api_key"),
        ({"provider_id": "anthropic", "auth_type": "magic", "api_key": "k" * 20}, "auth_type"),
        (
            {"provider_id": "github-copilot", "auth_type": "oauth", "oauth_access_token": "a"},
            "oauth_refresh_token",
        ),
        ({"provider_id": "x", "auth_type": "wellknown", "api_key": "k" * 20}, "auth_type"),
        (
            {
                "provider_id": "mine",
                "api_key": "k" * 20,
                "base_url": "ftp://host",
                "name": "M",
                "models": ["m"],
            },
            "base_url",
        ),
        (
            {
                "provider_id": "mine",
                "api_key": "k" * 20,
                "base_url": "http://127.0.0.1:9/v1",
                "name": "M",
                "models": [],
            },
            "models",
        ),
        (
            {
                "provider_id": "mine",
                "api_key": "k" * 20,
                "base_url": "http://127.0.0.1:9/v1",
                "models": ["m"],
            },
            "name",
        ),
        ({"provider_id": "cf", "api_key": "k" * 20, "metadata": {"account": 3}}, "metadata"),
    ],
)
def test_create_rejects_what_does_not_fit(alice, arguments, field):
    with pytest.raises(ValidationError) as error:
        services.connection_create(user=alice, **arguments)
    assert field in error.value.message_dict
    assert not ProviderConnection.objects.exists()
    assert not AuditEvent.objects.exists()


def test_create_a_custom_provider_and_an_oauth_connection(alice):
    custom = services.connection_create(
        user=alice,
        provider_id="stub",
        api_key="stub-key-123456789",
        name="Stub",
        base_url="http://127.0.0.1:9999/v1",
        models=["stub-model"],
    )
    assert custom.is_custom and custom.models == ["stub-model"]
    expires = timezone.now() + timedelta(hours=2)
    oauth = services.connection_create(
        user=alice,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token="access-token-0123456789",
        oauth_refresh_token="ghu_refresh0123456789",
        oauth_expires_at=expires,
        oauth_account_id="acct-1",
    )
    assert oauth.key_hint == "…6789" and oauth.api_key is None


def test_update_replaces_the_key_resets_the_status_and_audits_field_names_only(alice, bob):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key=ANTHROPIC_KEY
    )
    services.connection_mark_error(connection=connection, message="401 from provider")
    new_key = "sk-ant-api03-" + "b" * 40 + "0042"
    services.connection_update(connection=connection, api_key=new_key, actor=bob)

    connection.refresh_from_db()
    assert connection.api_key == new_key
    assert (connection.status, connection.error_message) == ("connected", "")
    assert connection.key_hint == "sk-ant-…0042"
    event = events(action="updated")[-1]
    assert event.actor == bob and event.detail == {"fields": ["api_key"]}
    assert new_key not in str(event.detail)


def test_switching_auth_type_drops_the_other_types_secrets(alice):
    connection = services.connection_create(
        user=alice, provider_id="openai", api_key="sk-proj-" + "c" * 40
    )
    services.connection_update(
        connection=connection,
        auth_type="oauth",
        oauth_access_token="acc-0123456789abcdef",
        oauth_refresh_token="ref-0123456789abcdef",
    )
    connection.refresh_from_db()
    assert connection.api_key is None
    assert raw_connection_value(connection.pk, "api_key") is None
    assert opencode_credential(connection).to_json()["type"] == "oauth"


def test_revoke_keeps_the_row_and_delete_removes_it_but_the_audit_stays(alice, admin_user):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key=ANTHROPIC_KEY
    )
    services.connection_revoke(connection=connection, actor=admin_user, reason="leaked")
    connection.refresh_from_db()
    assert connection.status == "revoked" and connection.api_key == ANTHROPIC_KEY
    assert events(action="revoked")[0].actor == admin_user

    services.connection_delete(connection=connection)
    assert not ProviderConnection.objects.exists()
    [gone] = events(action="disconnected")
    assert gone.connection is None and gone.provider_id == "anthropic" and gone.user == alice


def test_audit_and_error_messages_are_redacted(alice):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key=ANTHROPIC_KEY
    )
    services.connection_mark_error(connection=connection, message=f"rejected {ANTHROPIC_KEY}")
    connection.refresh_from_db()
    assert ANTHROPIC_KEY not in connection.error_message
    assert "[REDACTED]" in connection.error_message
    event = services.audit_record(action="validated", detail={"echo": [f"key={ANTHROPIC_KEY}"]})
    assert ANTHROPIC_KEY not in str(event.detail)


def test_revalidate_checks_what_it_can_without_the_provider(alice, use_keys):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key=ANTHROPIC_KEY
    )
    services.connection_revalidate(connection=connection)
    assert connection.status == "connected" and connection.last_validated_at is not None
    assert events(action="validated")

    use_keys(WRONG_KEY)
    broken = ProviderConnection.objects.get(pk=connection.pk)
    services.connection_revalidate(connection=broken)
    broken.refresh_from_db()
    assert broken.status == "error"
    assert broken.error_message == "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"
    assert events(action="validation_failed")[0].detail["message"] == broken.error_message

    use_keys(keyring.generate_key(), WRONG_KEY)  # still not the key that made it
    services.connection_revoke(connection=broken)
    services.connection_revalidate(connection=ProviderConnection.objects.get(pk=broken.pk))
    assert ProviderConnection.objects.get(pk=broken.pk).status == "revoked"


def test_revalidate_tells_the_truth_about_an_oauth_expiry(alice):
    """Past its expiry with a refresh token: still connected (OpenCode refreshes it).
    After a refresh failed: expired, and Test does not hide that."""
    connection = services.connection_create(
        user=alice,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token="acc-0123456789abcdef",
        oauth_refresh_token="ref-0123456789abcdef",
        oauth_expires_at=timezone.now() - timedelta(minutes=1),
    )
    services.connection_revalidate(connection=connection)
    assert ProviderConnection.objects.get(pk=connection.pk).status == "connected"

    services.connection_mark_expired(connection=connection, message="invalid_grant")
    services.connection_revalidate(connection=ProviderConnection.objects.get(pk=connection.pk))
    again = ProviderConnection.objects.get(pk=connection.pk)
    assert again.status == "expired" and again.error_message == "Sign in again: invalid_grant"


def test_credential_changes_are_signalled_after_commit_with_ids_only(
    alice, django_capture_on_commit_callbacks
):
    from providers.signals import credential_changed, credential_removed

    received = []

    def listener(name):
        def receive(sender, *, user_id, provider_id, **kwargs):
            received.append((name, {"user_id": user_id, "provider_id": provider_id}))

        return receive

    on_change, on_remove = listener("changed"), listener("removed")
    credential_changed.connect(on_change)
    credential_removed.connect(on_remove)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            connection = services.connection_create(
                user=alice, provider_id="anthropic", api_key=ANTHROPIC_KEY
            )
        with django_capture_on_commit_callbacks(execute=True):
            services.connection_update(connection=connection, name="")  # no new secret
        with django_capture_on_commit_callbacks(execute=True):
            services.connection_update(connection=connection, api_key=ANTHROPIC_KEY + "2")
        with django_capture_on_commit_callbacks(execute=True):
            services.connection_revoke(connection=connection)
        with django_capture_on_commit_callbacks(execute=True):
            services.connection_delete(connection=connection)
    finally:
        credential_changed.disconnect(on_change)
        credential_removed.disconnect(on_remove)
    ids = {"user_id": alice.pk, "provider_id": "anthropic"}
    assert received == [("changed", ids), ("changed", ids), ("removed", ids), ("removed", ids)]


def test_a_custom_endpoint_may_have_no_key_but_then_has_no_credential(alice):
    connection = services.connection_create(
        user=alice,
        provider_id="ollama",
        name="Local",
        base_url="http://127.0.0.1:11434/v1",
        models=["llama3"],
    )
    assert connection.api_key is None and connection.key_hint == ""
    services.connection_revalidate(connection=connection)
    assert connection.status == "connected"
    with pytest.raises(services.CredentialUnavailable) as error:
        services.credential_for(user=alice, provider_id="ollama")
    assert error.value.reason == services.CredentialUnavailable.KEYLESS_ENDPOINT


# --- the services the settings pages call --------------------------------------------


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
        user=alice,
        provider_id="openai",
        auth_type="oauth",
        oauth_access_token="a" * 20,
        oauth_refresh_token="r" * 20,
    )
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
        user=alice,
        provider_id="mine",
        name="Mine",
        base_url=provider_api.url + "/v1",
        models=["m"],
    )
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
