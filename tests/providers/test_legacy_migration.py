"""The migration chain upgrades a database at providers 0001 (the old system's schema, with
plaintext keys) and goes back again. Runs on whichever database the suite uses (SQLite by
default, PostgreSQL with DATABASE_URL)."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from doce import keyring
from tests.factories import UserFactory
from tests.providers.conftest import WRONG_KEY, database_bytes, latest, raw_legacy_value

LEGACY_0001 = [("providers", "0001_initial")]
ALICE_KEY = "sk-or-v1-alice-legacy-" + "a" * 40
BOB_KEY = "sk-or-v1-bob-legacy-" + "b" * 40


def insert_legacy_row(user, key, default_model="openrouter/auto"):
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO user_settings (user_id, openrouter_api_key, default_model, updated_at) "
            "VALUES (%s, %s, %s, %s)",
            [user.pk, key, default_model, timezone.now()],
        )


@pytest.fixture
def legacy_database(migrator):
    """A database at 0001 with the old system's rows: two plaintext keys, a NULL, an
    empty string, and a value encrypted with a key nobody has any more."""
    migrator(LEGACY_0001)
    users = {name: UserFactory(username=name) for name in ("alice", "bob", "carol", "dave", "erin")}
    insert_legacy_row(users["alice"], ALICE_KEY)
    insert_legacy_row(users["bob"], BOB_KEY)
    insert_legacy_row(users["carol"], None)
    insert_legacy_row(users["dave"], "")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.conf.settings.DOCE_ENCRYPTION_KEYS", [WRONG_KEY])
        lost = keyring.encrypt("sk-or-v1-" + "erin-lost-key-0000")
    insert_legacy_row(users["erin"], lost)
    return users, lost


def test_upgrading_a_0001_database_encrypts_and_migrates_every_legacy_key(
    migrator, legacy_database
):
    users, lost = legacy_database
    apps = migrator(latest())
    UserSettings = apps.get_model("providers", "UserSettings")
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    AuditEvent = apps.get_model("providers", "AuditEvent")

    for name, key in (("alice", ALICE_KEY), ("bob", BOB_KEY)):
        user = users[name]
        stored = raw_legacy_value(user.pk)
        assert keyring.looks_encrypted(stored) and keyring.decrypt(stored) == key  # in place
        connection_ = ProviderConnection.objects.get(user_id=user.pk)
        assert (connection_.provider_id, connection_.auth_type, connection_.status) == (
            "openrouter",
            "api",
            "connected",
        )
        assert connection_.api_key == key and connection_.key_hint == f"sk-or-…{key[-4:]}"
        row = UserSettings.objects.get(pk=user.pk)
        assert row.provider_auth_initialized and row.migration_completed_at is not None
        assert row.preferred_provider_id == "openrouter"
        assert row.default_model == "openrouter/auto"
        assert AuditEvent.objects.get(user_id=user.pk).action == "migrated"

    # Nothing to migrate, and a value nobody can decrypt: left exactly as they were.
    assert raw_legacy_value(users["carol"].pk) is None
    assert raw_legacy_value(users["dave"].pk) == ""
    assert raw_legacy_value(users["erin"].pk) == lost
    assert UserSettings.objects.get(pk=users["erin"].pk).migration_completed_at is None
    assert ProviderConnection.objects.count() == 2

    # The plaintext left no copy behind in the database file (or the dump).
    raw = database_bytes()
    assert ALICE_KEY.encode() not in raw and BOB_KEY.encode() not in raw
    assert raw_legacy_value(users["alice"].pk).encode() in raw  # we read the right thing


def test_the_data_migrations_are_idempotent(migrator, legacy_database):
    users, _ = legacy_database
    apps = migrator(latest())
    encrypt = importlib.import_module("providers.migrations.0003_encrypt_legacy_keys")
    move = importlib.import_module("providers.migrations.0004_migrate_legacy_keys")
    before = raw_legacy_value(users["alice"].pk)
    schema_editor = SimpleNamespace(connection=connection)
    UserSettings = apps.get_model("providers", "UserSettings")
    ProviderConnection = apps.get_model("providers", "ProviderConnection")

    move.forward(apps, schema_editor)  # done rows are skipped
    # A row that looks pending although its connection exists (e.g. restored settings).
    UserSettings.objects.filter(pk=users["alice"].pk).update(migration_completed_at=None)
    move.forward(apps, schema_editor)
    assert ProviderConnection.objects.count() == 2
    assert UserSettings.objects.get(pk=users["alice"].pk).migration_completed_at is not None
    # 0003 again on already-encrypted values (its state sees a plain text column).
    old_apps = (
        MigrationExecutor(connection)
        .loader.project_state([("providers", "0002_provider_connections")])
        .apps
    )
    encrypt.encrypt_in_place(old_apps, schema_editor)
    assert raw_legacy_value(users["alice"].pk) == before


def test_going_back_to_0001_restores_the_plaintext_and_forward_again_works(
    migrator, legacy_database
):
    users, lost = legacy_database
    migrator(latest())
    migrator(LEGACY_0001)
    assert raw_legacy_value(users["alice"].pk) == ALICE_KEY
    assert raw_legacy_value(users["bob"].pk) == BOB_KEY
    assert raw_legacy_value(users["erin"].pk) == lost  # still no key for it: untouched

    apps = migrator(latest())
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    assert sorted(ProviderConnection.objects.values_list("user_id", flat=True)) == sorted(
        [users["alice"].pk, users["bob"].pk]
    )


def test_undoing_the_move_keeps_a_key_the_user_changed_since(migrator, legacy_database):
    users, _ = legacy_database
    apps = migrator(latest())
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    changed = ProviderConnection.objects.get(user_id=users["bob"].pk)
    changed.api_key = "sk-or-" + "v1-bob-new-key-0123456789"
    changed.save()

    apps = migrator([("providers", "0003_encrypt_legacy_keys")])
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    UserSettings = apps.get_model("providers", "UserSettings")
    assert list(ProviderConnection.objects.values_list("user_id", flat=True)) == [users["bob"].pk]
    assert not UserSettings.objects.filter(migration_completed_at__isnull=False).exists()
    assert keyring.decrypt(raw_legacy_value(users["alice"].pk)) == ALICE_KEY  # never blanked
