"""Expired OAuth connections: the periodic task and manage.py credentials_status."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone

from providers import services
from providers.models import AuditEvent, ProviderConnection
from providers.tasks import expire_oauth_connections
from tests.factories import UserSettingsFactory

pytestmark = pytest.mark.django_db


def oauth(user, provider_id, expires_in, **extra):
    return services.connection_create(
        user=user,
        provider_id=provider_id,
        auth_type="oauth",
        oauth_access_token="access-0123456789",
        oauth_refresh_token="refresh-0123456789",
        oauth_expires_at=timezone.now() + expires_in,
        **extra,
    )


def test_the_task_marks_only_tokens_that_cannot_be_refreshed(alice, bob):
    """A passed expiry is not "expired" while there is a refresh token: OpenCode refreshes
    it at the next use. Only a token with nothing to renew it is."""
    refreshable = oauth(alice, "github-copilot", timedelta(minutes=-5))
    stuck = oauth(alice, "openai", timedelta(minutes=-5))
    ProviderConnection.objects.filter(pk=stuck.pk).update(oauth_refresh_token=None)
    future = oauth(alice, "anthropic", timedelta(minutes=30))
    revoked = services.connection_revoke(connection=oauth(bob, "github-copilot", -timedelta(1)))
    api = services.connection_create(user=bob, provider_id="groq", api_key="gsk_0123456789abc")

    assert expire_oauth_connections.apply().get() == 1  # eager: the task's own code path
    statuses = dict(ProviderConnection.objects.values_list("pk", "status"))
    assert statuses == {
        refreshable.pk: "connected",
        stuck.pk: "expired",
        future.pk: "connected",
        revoked.pk: "revoked",
        api.pk: "connected",
    }
    stuck.refresh_from_db()
    assert stuck.error_message.startswith("Sign in again")
    event = AuditEvent.objects.get(action="expired")
    assert (event.connection_id, event.user) == (stuck.pk, alice)
    assert expire_oauth_connections.apply().get() == 0  # nothing twice


def test_beat_runs_the_task():
    entry = settings.CELERY_BEAT_SCHEDULE["providers.expire-oauth-connections"]
    assert entry["task"] == expire_oauth_connections.name
    assert 0 < float(entry["schedule"]) <= 3600


def test_credentials_status_prints_counts_legacy_and_expiring_tokens(alice, bob):
    oauth(alice, "github-copilot", timedelta(minutes=-5))
    oauth(bob, "github-copilot", timedelta(minutes=30))
    oauth(bob, "anthropic", timedelta(hours=3))  # not within the hour
    services.connection_revoke(
        connection=services.connection_create(user=alice, provider_id="groq", api_key="g" * 20)
    )
    services.connection_mark_expired(
        connection=ProviderConnection.objects.get(user=alice, auth_type="oauth"),
        message="the refresh failed",
    )
    carol = UserSettingsFactory(openrouter_api_key=("sk-or-v1-" + "pending-legacy-key")).user

    out = io.StringIO()
    call_command("credentials_status", stdout=out)
    lines = [line.split() for line in out.getvalue().splitlines()]
    assert ["connected", "2"] in lines and ["expired", "1"] in lines
    assert ["revoked", "1"] in lines and ["error", "0"] in lines and ["total", "4"] in lines
    assert "Legacy OpenRouter keys not yet migrated: 1" in out.getvalue()
    assert "OAuth tokens expired or expiring within an hour: 2" in out.getvalue()
    expiring = [line for line in lines if line and line[-1] in ("ago", "min")]
    assert [(line[0], line[1], line[4]) for line in expiring] == [
        ("alice", "github-copilot", "expired"),
        ("bob", "github-copilot", "connected"),
    ]
    assert ("sk-or-v1-" + "pending-legacy-key") not in out.getvalue() and carol.username not in str(
        expiring
    )
