"""Helpers for the credential store tests: keys, raw column reads, raw database bytes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from doce import keyring

#: The key tests/settings.py configures; everything a test creates is encrypted with it.
TEST_KEY = django_settings.DOCE_ENCRYPTION_KEYS[0]
NEW_KEY = keyring.generate_key()
WRONG_KEY = keyring.generate_key()


@pytest.fixture
def use_keys(settings):
    """``use_keys(first, *others)`` sets DOCE_ENCRYPTION_KEYS for the rest of the test."""

    def use(*keys: str) -> None:
        settings.DOCE_ENCRYPTION_KEYS = list(keys)

    return use


def raw_value(table: str, column: str, pk_column: str, pk) -> str | None:
    """A column's stored value, read with SQL (no model field in between)."""
    with connection.cursor() as cursor:
        quote = connection.ops.quote_name
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(table)} WHERE {quote(pk_column)} = %s", [pk]
        )
        return cursor.fetchone()[0]


def raw_connection_value(connection_pk: int, column: str) -> str | None:
    return raw_value("provider_connections", column, "id", connection_pk)


def raw_legacy_value(user_pk: int) -> str | None:
    return raw_value("user_settings", "openrouter_api_key", "user_id", user_pk)


def database_bytes() -> bytes:
    """Everything the database holds at rest: the SQLite file and its write-ahead log, or
    a pg_dump of the PostgreSQL test database. Needs committed data (transactional_db)."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        path = Path(params["NAME"])
        return b"".join(
            Path(f"{path}{suffix}").read_bytes()
            for suffix in ("", "-wal", "-journal")
            if Path(f"{path}{suffix}").exists()
        )
    assert connection.vendor == "postgresql", connection.vendor
    env = dict(os.environ, PGPASSWORD=params.get("PASSWORD") or "")
    return subprocess.run(
        [
            "pg_dump", "--no-owner",
            "-h", params.get("HOST") or "127.0.0.1", "-p", str(params.get("PORT") or 5432),
            "-U", params.get("USER") or "postgres", params["NAME"],
        ],
        env=env, check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
