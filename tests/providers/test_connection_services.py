"""connection_create / update / revoke / delete / revalidate / mark_error and their audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from doce import keyring
from providers import services
from providers.models import AuditEvent, ProviderConnection, UserSettings
from tests.providers.conftest import WRONG_KEY, raw_connection_value

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
        "connected", alice, alice, "alice",
    )  # fmt: skip
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
        ({"provider_id": "github-copilot", "auth_type": "oauth", "oauth_access_token": "a"},
         "oauth_refresh_token"),
        ({"provider_id": "x", "auth_type": "wellknown", "wellknown_key": "https://x"},
         "wellknown_token"),
        ({"provider_id": "mine", "api_key": "k" * 20, "base_url": "ftp://host", "name": "M",
          "models": ["m"]}, "base_url"),
        ({"provider_id": "mine", "api_key": "k" * 20, "base_url": "http://127.0.0.1:9/v1",
          "name": "M", "models": []}, "models"),
        ({"provider_id": "mine", "api_key": "k" * 20, "base_url": "http://127.0.0.1:9/v1",
          "models": ["m"]}, "name"),
        ({"provider_id": "cf", "api_key": "k" * 20, "metadata": {"account": 3}}, "metadata"),
    ],
)  # fmt: skip
def test_create_rejects_what_does_not_fit(alice, arguments, field):
    with pytest.raises(ValidationError) as error:
        services.connection_create(user=alice, **arguments)
    assert field in error.value.message_dict
    assert not ProviderConnection.objects.exists()
    assert not AuditEvent.objects.exists()


def test_create_a_custom_provider_and_an_oauth_and_a_wellknown_connection(alice):
    custom = services.connection_create(
        user=alice, provider_id="stub", api_key="stub-key-123456789", name="Stub",
        base_url="http://127.0.0.1:9999/v1", models=["stub-model"],
    )  # fmt: skip
    assert custom.is_custom and custom.models == ["stub-model"]
    expires = timezone.now() + timedelta(hours=2)
    oauth = services.connection_create(
        user=alice, provider_id="github-copilot", auth_type="oauth",
        oauth_access_token="access-token-0123456789", oauth_refresh_token="ghu_refresh0123456789",
        oauth_expires_at=expires, oauth_account_id="acct-1",
    )  # fmt: skip
    assert oauth.key_hint == "…6789" and oauth.api_key is None
    wellknown = services.connection_create(
        user=alice, provider_id="corp", auth_type="wellknown",
        wellknown_key="https://ai.example.test", wellknown_token="wk-token-abcdefgh1234",
    )  # fmt: skip
    assert wellknown.key_hint == "wk-…1234"


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
        connection=connection, auth_type="oauth", oauth_access_token="acc-0123456789abcdef",
        oauth_refresh_token="ref-0123456789abcdef",
    )  # fmt: skip
    connection.refresh_from_db()
    assert connection.api_key is None
    assert raw_connection_value(connection.pk, "api_key") is None
    assert connection.auth_body()["type"] == "oauth"


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


def test_revalidate_marks_an_oauth_connection_past_expiry_expired(alice):
    connection = services.connection_create(
        user=alice, provider_id="github-copilot", auth_type="oauth",
        oauth_access_token="acc-0123456789abcdef", oauth_refresh_token="ref-0123456789abcdef",
        oauth_expires_at=timezone.now() - timedelta(minutes=1),
    )  # fmt: skip
    services.connection_revalidate(connection=connection)
    assert ProviderConnection.objects.get(pk=connection.pk).status == "expired"


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
        user=alice, provider_id="ollama", name="Local", base_url="http://127.0.0.1:11434/v1",
        models=["llama3"],
    )  # fmt: skip
    assert connection.api_key is None and connection.key_hint == ""
    services.connection_revalidate(connection=connection)
    assert connection.status == "connected"
    with pytest.raises(services.CredentialUnavailable) as error:
        services.credential_for(user=alice, provider_id="ollama")
    assert error.value.reason == "incomplete"
