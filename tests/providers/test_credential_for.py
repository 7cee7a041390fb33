"""credential_for: which credential a user has for a provider, in auth.json shape."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from doce.opencode import WellKnownCredential
from providers import services
from providers.models import AuditEvent, ProviderConnection
from providers.services import CredentialUnavailable, credential_for
from tests.factories import UserSettingsFactory
from tests.providers.conftest import TEST_KEY, WRONG_KEY, raw_connection_value

pytestmark = pytest.mark.django_db

LEGACY_KEY = "sk-or-v1-" + "1" * 56 + "cafe"


def test_an_api_connection_gives_the_api_body_with_its_metadata(alice, django_assert_num_queries):
    services.connection_create(
        user=alice,
        provider_id="cloudflare-workers-ai",
        api_key="cf-token-0123456789abcdef",
        metadata={"accountId": "acc-1"},
    )
    with django_assert_num_queries(1):
        credential = credential_for(user=alice, provider_id="cloudflare-workers-ai")
    assert credential.credential.to_json() == {
        "type": "api",
        "key": "cf-token-0123456789abcdef",
        "metadata": {"accountId": "acc-1"},
    }
    assert type(credential.credential.to_json()["key"]) is str  # plain text, no token attached
    assert (credential.source, credential.user_id) == ("connection", alice.pk)


def test_an_oauth_connection_gives_the_oauth_body(alice):
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    services.connection_create(
        user=alice,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token="access-0123456789",
        oauth_refresh_token="refresh-0123456789",
        oauth_expires_at=expires,
        oauth_account_id="acct-7",
        oauth_enterprise_url="https://ghe.example.test",
    )
    credential = credential_for(user=alice.pk, provider_id="github-copilot", holder=7)
    assert credential.credential.to_json() == {
        "type": "oauth",
        "refresh": "refresh-0123456789",
        "access": "access-0123456789",
        "expires": int(expires.timestamp() * 1000),
        "accountId": "acct-7",
        "enterpriseUrl": "https://ghe.example.test",
    }


def test_there_is_no_wellknown_connection(alice):
    """Dropped (migration 0007): OpenCode keeps such entries under a URL, not a provider."""
    with pytest.raises(ValidationError) as error:
        services.connection_create(user=alice, provider_id="corp", auth_type="wellknown")
    assert "auth_type" in error.value.message_dict
    with pytest.raises(ValueError, match="well-known"):
        services.credential_fields(
            WellKnownCredential("https://ai.example.test", "ORG_TOKEN", "tok")
        )


def test_another_users_connection_is_not_yours(alice, bob):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-alice-0123")
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=bob, provider_id="anthropic")
    assert error.value.reason == "missing"
    assert str(error.value) == "No credential for anthropic: connect it in Settings."


def test_openrouter_falls_back_to_the_legacy_key_until_it_is_migrated(alice, bob):
    UserSettingsFactory(user=alice, openrouter_api_key=LEGACY_KEY)
    credential = credential_for(user=alice, provider_id="openrouter")
    assert credential.credential.to_json() == {"type": "api", "key": LEGACY_KEY}
    assert (credential.source, credential.connection_id) == ("legacy", None)
    assert credential.key_hint == "sk-or-…cafe"
    with pytest.raises(CredentialUnavailable):
        credential_for(user=bob, provider_id="openrouter")  # bob has no legacy key
    with pytest.raises(CredentialUnavailable):
        credential_for(user=alice, provider_id="anthropic")  # the fallback is openrouter's


def test_a_connection_wins_over_the_legacy_key(alice):
    UserSettingsFactory(user=alice, openrouter_api_key=LEGACY_KEY)
    services.connection_create(user=alice, provider_id="openrouter", api_key="sk-or-v1-newer-01")
    credential = credential_for(user=alice, provider_id="openrouter")
    assert (
        credential.source == "connection"
        and credential.credential.to_json()["key"] == "sk-or-v1-newer-01"
    )


def test_after_migration_a_deleted_connection_does_not_bring_the_legacy_key_back(alice):
    UserSettingsFactory(
        user=alice, openrouter_api_key=LEGACY_KEY, migration_completed_at=timezone.now()
    )
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=alice, provider_id="openrouter")
    assert error.value.reason == "missing"


def test_a_revoked_connection_is_unavailable(alice):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key="sk-ant-0123456789"
    )
    services.connection_revoke(connection=connection)
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=alice, provider_id="anthropic")
    assert (error.value.reason, error.value.connection_id) == ("revoked", connection.pk)


def test_an_undecryptable_key_marks_the_connection_error_once_and_keeps_the_ciphertext(
    alice, use_keys
):
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key="sk-ant-0123456789"
    )
    token = raw_connection_value(connection.pk, "api_key")
    use_keys(WRONG_KEY)
    for _ in range(2):
        with pytest.raises(CredentialUnavailable) as error:
            credential_for(user=alice, provider_id="anthropic")
        assert error.value.reason == "undecryptable"
        assert str(error.value) == "anthropic: cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"
    connection.refresh_from_db()
    assert connection.status == "error"
    assert connection.error_message == "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"
    assert raw_connection_value(connection.pk, "api_key") == token
    assert AuditEvent.objects.filter(action="validation_failed").count() == 1

    use_keys(WRONG_KEY, TEST_KEY)  # the key that made it is back
    assert (
        credential_for(user=alice, provider_id="anthropic").credential.to_json()["key"]
        == "sk-ant-0123456789"
    )
    connection.refresh_from_db()
    assert (connection.status, connection.error_message) == ("connected", "")


def test_an_undecryptable_legacy_key_is_reported(alice, use_keys):
    UserSettingsFactory(user=alice, openrouter_api_key=LEGACY_KEY)
    use_keys(WRONG_KEY)
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=alice, provider_id="openrouter")
    assert error.value.reason == "undecryptable"


def test_the_credential_repr_never_shows_the_key(alice):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-0123456789")
    credential = credential_for(user=alice, provider_id="anthropic")
    assert "sk-ant-0123456789" not in repr(credential)
    assert "sk-ant-0123456789" not in repr([credential])


def test_marking_injected_and_removed_is_audited(alice):
    services.connection_create(user=alice, provider_id="anthropic", api_key="sk-ant-0123456789")
    credential = credential_for(user=alice, provider_id="anthropic")
    services.credential_mark_injected(credential=credential, project_id=42)
    services.credential_mark_removed(user=alice, provider_id="anthropic", project_id=42)
    # Put into a server is not used: last_used_at is the last model call it paid for.
    assert ProviderConnection.objects.get(pk=credential.connection_id).last_used_at is None
    injected, removed = AuditEvent.objects.filter(project_id=42).order_by("id")
    assert (injected.action, injected.connection_id) == ("injected", credential.connection_id)
    assert (removed.action, removed.user) == ("removed", alice)


def test_a_connection_recovers_by_itself_when_its_key_comes_back(alice, use_keys):
    """No Test click needed: beat's round finds it decrypts again."""
    connection = services.connection_create(
        user=alice, provider_id="anthropic", api_key="sk-ant-0123456789"
    )
    use_keys(WRONG_KEY)
    with pytest.raises(CredentialUnavailable):
        credential_for(user=alice, provider_id="anthropic")  # marks it error
    assert services.connections_recover_undecryptable() == 0  # still the wrong key
    connection.refresh_from_db()
    assert connection.status == "error"

    use_keys(WRONG_KEY, TEST_KEY)  # the key that made it is back
    assert services.connections_recover_undecryptable() == 1
    connection.refresh_from_db()
    assert connection.status == "connected" and connection.error_message == ""
    assert connection.key_hint.endswith("6789")
    assert AuditEvent.objects.filter(action="validated", connection_id=connection.pk).count() == 1
    assert services.connections_recover_undecryptable() == 0  # once
