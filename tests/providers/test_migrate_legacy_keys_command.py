"""manage.py migrate_legacy_keys: rows that appear after the data migration (a restore)."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from doce import keyring
from providers import services
from providers.models import AuditEvent, ProviderConnection, UserSettings
from tests.factories import UserSettingsFactory
from tests.providers.conftest import WRONG_KEY, raw_legacy_value

pytestmark = pytest.mark.django_db

ALICE_KEY = "sk-or-" + "v1-alice-restored-0123456789abcdef"
BOB_KEY = "sk-or-" + "v1-bob-restored-0123456789abcdef"


def migrate_legacy_keys(*args: str) -> str:
    out = io.StringIO()
    call_command("migrate_legacy_keys", *args, stdout=out)
    return out.getvalue()


def restore_plaintext_row(user, key):
    """A user_settings row as a backup of the old system has it: the key in plaintext."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO user_settings (user_id, openrouter_api_key, default_model, updated_at,"
            " preferred_provider_id, provider_auth_initialized) VALUES (%s, %s, '', %s, '', %s)",
            [user.pk, key, timezone.now(), False],
        )


def test_a_dry_run_says_what_it_would_do_and_writes_nothing(alice, bob):
    UserSettingsFactory(user=alice, openrouter_api_key=ALICE_KEY)
    restore_plaintext_row(bob, BOB_KEY)
    output = migrate_legacy_keys("--dry-run")
    assert "alice: would create an openrouter connection" in output
    assert (
        "bob: would create an openrouter connection; would encrypt the plaintext legacy value"
        in output
    )
    assert "Dry run: 2 to migrate, 0 skipped; nothing written." in output
    assert not ProviderConnection.objects.exists() and not AuditEvent.objects.exists()
    assert raw_legacy_value(bob.pk) == BOB_KEY
    assert ALICE_KEY not in output and BOB_KEY not in output


def test_restored_rows_are_encrypted_and_migrated_once(alice, bob):
    UserSettingsFactory(user=alice, openrouter_api_key=ALICE_KEY)
    restore_plaintext_row(bob, BOB_KEY)

    output = migrate_legacy_keys()
    assert "bob: created an openrouter connection; encrypted the plaintext legacy value" in output
    assert "Migrated 2 legacy key(s), skipped 0." in output
    assert keyring.decrypt(raw_legacy_value(bob.pk)) == BOB_KEY  # kept, now encrypted
    connection_ = ProviderConnection.objects.get(user=bob)
    assert connection_.api_key == BOB_KEY and connection_.provider_id == "openrouter"
    settings_row = UserSettings.objects.get(user=bob)
    assert settings_row.provider_auth_initialized and settings_row.migration_completed_at
    event = AuditEvent.objects.get(user=bob)
    assert (event.action, event.actor_name) == ("migrated", "manage.py migrate_legacy_keys")

    assert "No legacy key waiting to be migrated." in migrate_legacy_keys()
    assert ProviderConnection.objects.count() == 2


def test_only_the_named_user(alice, bob):
    UserSettingsFactory(user=alice, openrouter_api_key=ALICE_KEY)
    UserSettingsFactory(user=bob, openrouter_api_key=BOB_KEY)
    output = migrate_legacy_keys("--user", "bob")
    assert "bob: created" in output and "alice" not in output
    assert list(ProviderConnection.objects.values_list("user__username", flat=True)) == ["bob"]
    with pytest.raises(CommandError, match="No user named 'nobody'"):
        migrate_legacy_keys("--user", "nobody")


def test_an_existing_connection_is_kept_and_the_preference_is_not_overwritten(alice):
    UserSettingsFactory(user=alice, openrouter_api_key=ALICE_KEY, preferred_provider_id="openai")
    services.connection_create(user=alice, provider_id="openrouter", api_key="sk-or-v1-chosen-01")
    output = migrate_legacy_keys()
    assert "alice: kept the existing openrouter connection" in output
    assert ProviderConnection.objects.get(user=alice).api_key == "sk-or-v1-chosen-01"
    settings_row = UserSettings.objects.get(user=alice)
    assert settings_row.preferred_provider_id == "openai"
    assert settings_row.migration_completed_at is not None


def test_an_undecryptable_legacy_key_is_skipped_and_stays_pending(alice, use_keys):
    UserSettingsFactory(user=alice, openrouter_api_key=ALICE_KEY)
    token = raw_legacy_value(alice.pk)
    use_keys(WRONG_KEY)
    output = migrate_legacy_keys()
    assert "alice: skipped, cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?" in output
    assert "Migrated 0 legacy key(s), skipped 1." in output
    assert raw_legacy_value(alice.pk) == token
    assert UserSettings.objects.get(user=alice).migration_completed_at is None
