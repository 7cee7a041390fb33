"""One project holds an OAuth connection's refresh token; tokens it refreshed are written
back; a refresh that fails means "sign in again" (providers side of docs/oauth-tokens.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from doce.opencode import OAuthCredential
from providers import services
from providers.models import AuditEvent, ProviderConnection
from providers.services import FOLLOWER_REFRESH, CredentialUnavailable, credential_for
from providers.signals import oauth_tokens_refreshed

pytestmark = pytest.mark.django_db

ONE, TWO = 101, 102  # project ids


@pytest.fixture
def signed_in(alice):
    return services.connection_create(
        user=alice,
        provider_id="openai",
        auth_type="oauth",
        oauth_access_token="access-first-0123456789",
        oauth_refresh_token="refresh-first-0123456789",
        oauth_expires_at=timezone.now() + timedelta(minutes=30),
    )


def refreshed(minutes: int = 60, n: int = 2) -> OAuthCredential:
    expires = timezone.now() + timedelta(minutes=minutes)
    return OAuthCredential(
        access=f"access-{n}-0123456789",
        refresh=f"refresh-{n}-0123456789",
        expires=int(expires.timestamp() * 1000),
    )


def test_only_the_holder_gets_the_refresh_token(signed_in, alice):
    first = credential_for(user=alice, provider_id="openai", holder=ONE).credential
    second = credential_for(user=alice, provider_id="openai", holder=TWO).credential
    unnamed = credential_for(user=alice, provider_id="openai").credential
    assert first.refresh == "refresh-first-0123456789"
    assert second.refresh == unnamed.refresh == FOLLOWER_REFRESH
    assert first.access == second.access == "access-first-0123456789"
    assert first.expires == second.expires  # the real expiry: the holder refreshes in time
    assert ProviderConnection.objects.get(pk=signed_in.pk).oauth_token_holder == ONE
    again = credential_for(user=alice, provider_id="openai", holder=ONE).credential
    assert again.refresh == "refresh-first-0123456789"


def test_an_expired_connection_is_not_injected(signed_in, alice):
    services.connection_mark_expired(connection=signed_in, message="invalid_grant")
    with pytest.raises(CredentialUnavailable) as error:
        credential_for(user=alice, provider_id="openai", holder=ONE)
    assert error.value.reason == "expired"
    assert "sign in again" in str(error.value)
    connection = ProviderConnection.objects.get(pk=signed_in.pk)
    assert connection.oauth_token_holder is None and connection.status == "expired"


def test_the_holders_refreshed_tokens_are_stored_audited_and_signalled(
    signed_in, alice, django_capture_on_commit_callbacks
):
    credential_for(user=alice, provider_id="openai", holder=ONE)
    received = []
    oauth_tokens_refreshed.connect(lambda **kw: received.append(kw), weak=False, dispatch_uid="t")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert services.connection_tokens_refreshed(
                connection_id=signed_in.pk, holder=ONE, credential=refreshed()
            )
    finally:
        oauth_tokens_refreshed.disconnect(dispatch_uid="t")
    connection = ProviderConnection.objects.get(pk=signed_in.pk)
    assert (connection.oauth_access_token, connection.oauth_refresh_token) == (
        "access-2-0123456789",
        "refresh-2-0123456789",
    )
    assert connection.key_hint.endswith("6789")
    event = AuditEvent.objects.get(action="refreshed")
    assert event.project_id == ONE and event.connection_id == signed_in.pk
    assert "0123456789" not in str(event.detail)
    assert [(r["user_id"], r["provider_id"], r["holder"]) for r in received] == [
        (alice.pk, "openai", ONE)
    ]


def test_nothing_but_newer_tokens_of_the_holder_is_stored(signed_in, alice):
    credential_for(user=alice, provider_id="openai", holder=ONE)
    store = services.connection_tokens_refreshed
    assert not store(connection_id=signed_in.pk, holder=TWO, credential=refreshed())
    follower = OAuthCredential(access="access-x-0123456789", refresh=FOLLOWER_REFRESH, expires=1)
    assert not store(connection_id=signed_in.pk, holder=ONE, credential=follower)
    assert not store(connection_id=signed_in.pk, holder=ONE, credential=refreshed(minutes=10))
    assert store(connection_id=signed_in.pk, holder=ONE, credential=refreshed())
    assert not store(connection_id=signed_in.pk, holder=ONE, credential=refreshed())  # same
    assert AuditEvent.objects.filter(action="refreshed").count() == 1


def test_a_refused_token_means_sign_in_again_unless_a_follower_was_refused(signed_in, alice):
    credential_for(user=alice, provider_id="openai", holder=ONE)
    services.connection_mark_error(connection=signed_in, message="401 Unauthorized", project_id=TWO)
    assert ProviderConnection.objects.get(pk=signed_in.pk).status == "connected"

    services.connection_mark_error(connection=signed_in, message="401 Unauthorized", project_id=ONE)
    connection = ProviderConnection.objects.get(pk=signed_in.pk)
    assert connection.status == "expired"
    assert connection.error_message == "Sign in again: 401 Unauthorized"
    assert connection.oauth_token_holder is None


def test_the_providers_page_tells_when_a_token_refreshes(signed_in):
    assert signed_in.oauth_expiry_note in (
        "expires in 29 min, refreshes automatically",
        "expires in 30 min, refreshes automatically",
    )
    signed_in.oauth_expires_at = timezone.now() - timedelta(minutes=1)
    assert "refreshes automatically" in signed_in.oauth_expiry_note
    signed_in.status = "expired"
    assert signed_in.oauth_expiry_note == ""


def test_the_holder_moves_only_from_whoever_holds_it(signed_in, alice):
    credential_for(user=alice, provider_id="openai", holder=ONE)
    assert not services.oauth_holder_move(connection_id=signed_in.pk, old=TWO, new=TWO)
    assert services.oauth_holder_move(connection_id=signed_in.pk, old=ONE, new=TWO)
    assert credential_for(user=alice, provider_id="openai", holder=ONE).credential.refresh == (
        FOLLOWER_REFRESH
    )


def test_read_back_values_that_are_not_tokens_of_this_account_are_refused(signed_in, alice):
    ProviderConnection.objects.filter(pk=signed_in.pk).update(oauth_account_id="acct-1")
    credential_for(user=alice, provider_id="openai", holder=ONE)
    store = services.connection_tokens_refreshed
    good = refreshed()
    other_account = OAuthCredential(good.access, good.refresh, good.expires, account_id="acct-2")
    assert not store(connection_id=signed_in.pk, holder=ONE, credential=other_account)
    garbage = OAuthCredential("a\n" * 10, good.refresh, good.expires)
    assert not store(connection_id=signed_in.pk, holder=ONE, credential=garbage)
    same_account = OAuthCredential(good.access, good.refresh, good.expires, account_id="acct-1")
    assert store(connection_id=signed_in.pk, holder=ONE, credential=same_account)
