"""Nothing plaintext at rest: the SQLite file's bytes, or a PostgreSQL dump, after
connections of every auth type were created and a restored legacy key was migrated."""

from __future__ import annotations

import io
import secrets

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from providers import services
from tests.providers.conftest import database_bytes, raw_connection_value, raw_legacy_value


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(24)}"  # unique: no other test wrote it


@pytest.mark.django_db(transaction=True)
def test_no_secret_is_stored_in_plaintext(alice, bob):
    api_key, access, refresh = _secret("sk-ant-api03-"), _secret("acc-"), _secret("ghr_")
    endpoint_key, legacy = _secret("ep-"), _secret("sk-or-")
    api = services.connection_create(user=alice, provider_id="anthropic", api_key=api_key)
    services.connection_create(
        user=alice,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token=access,
        oauth_refresh_token=refresh,
        oauth_expires_at=timezone.now(),
    )
    services.connection_create(
        user=bob,
        provider_id="corp",
        api_key=endpoint_key,
        name="Corp",
        base_url="http://127.0.0.1:9/v1",
        models=["m"],
    )
    with connection.cursor() as cursor:  # bob's row, restored in plaintext from a backup
        cursor.execute(
            "UPDATE user_settings SET openrouter_api_key = %s WHERE user_id = %s", [legacy, bob.pk]
        )
    call_command("migrate_legacy_keys", stdout=io.StringIO())

    raw = database_bytes()
    for secret in (api_key, access, refresh, endpoint_key, legacy):
        assert secret.encode() not in raw, "a secret is stored in plaintext"
    # The ciphertexts are there: the bytes we searched are the database's.
    assert raw_connection_value(api.pk, "api_key").encode() in raw
    assert raw_legacy_value(bob.pk).encode() in raw
