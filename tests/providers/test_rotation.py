"""rotate_encryption_keys: old+new keys, then the new key alone; wrong keys; dry runs."""

from __future__ import annotations

import io
from unittest import mock

import pytest
from django.core.management import call_command

from doce import keyring
from providers.models import AuditEvent, ProviderConnection
from tests.factories import ProviderConnectionFactory, UserSettingsFactory
from tests.providers.conftest import (
    NEW_KEY,
    TEST_KEY,
    WRONG_KEY,
    raw_connection_value,
    raw_legacy_value,
)

pytestmark = pytest.mark.django_db

LEGACY_KEY = "sk-or-" + "v1-legacy-0123456789abcdef"


def rotate(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def stored(alice, bob):
    """Three connections and a legacy key, all encrypted with TEST_KEY."""
    connections = [
        ProviderConnectionFactory(user=alice, provider_id="anthropic"),
        ProviderConnectionFactory(user=alice, provider_id="openai", api_key="sk-proj-" + "x" * 30),
        ProviderConnectionFactory(user=bob, provider_id="anthropic"),
    ]
    UserSettingsFactory(user=alice, openrouter_api_key=LEGACY_KEY)
    return {c.pk: c.api_key for c in connections}


def tokens(stored) -> dict:
    return {pk: raw_connection_value(pk, "api_key") for pk in stored}


def test_rotate_with_old_and_new_keys_then_the_new_key_alone(stored, alice, use_keys):
    before = tokens(stored)
    use_keys(NEW_KEY, TEST_KEY)
    output = rotate("--batch-size", "2")  # several batches

    assert "providers.ProviderConnection: rotated 3, already current 0" in output
    assert "providers.UserSettings: rotated 1, already current 0" in output
    assert "the other keys can be removed" in output
    after = tokens(stored)
    assert all(after[pk] != before[pk] and keyring.is_current(after[pk]) for pk in stored)
    assert keyring.is_current(raw_legacy_value(alice.pk))
    event = AuditEvent.objects.get(action="key_rotation")
    assert event.detail["rotated"] == 4 and event.actor_name == "manage.py rotate_encryption_keys"

    use_keys(NEW_KEY)  # the old key is gone: everything still reads
    for pk, plaintext in stored.items():
        assert ProviderConnection.objects.get(pk=pk).api_key == plaintext
    assert alice.doce_settings.__class__.objects.get(pk=alice.pk).openrouter_api_key == LEGACY_KEY


def test_re_running_changes_nothing(stored, use_keys):
    use_keys(NEW_KEY, TEST_KEY)
    rotate()
    first = tokens(stored)
    output = rotate()
    assert "providers.ProviderConnection: rotated 0, already current 3" in output
    assert tokens(stored) == first


def test_a_dry_run_counts_and_writes_nothing(stored, use_keys):
    before = tokens(stored)
    use_keys(NEW_KEY, TEST_KEY)
    output = rotate("--dry-run")
    assert "providers.ProviderConnection: to rotate 3, already current 0" in output
    assert "Dry run: nothing was written." in output
    assert tokens(stored) == before
    assert not AuditEvent.objects.filter(action="key_rotation").exists()


def test_values_no_key_opens_are_reported_and_left_intact(stored, alice, use_keys):
    use_keys(NEW_KEY, TEST_KEY)
    stranger = ProviderConnectionFactory(user=alice, provider_id="google")  # made with NEW_KEY
    lost_token = raw_connection_value(stranger.pk, "api_key")
    use_keys(WRONG_KEY, TEST_KEY)  # NEW_KEY was lost

    output = rotate()
    assert "providers.ProviderConnection: rotated 3, already current 0" in output
    assert "undecryptable 1" in output
    assert f"providers.ProviderConnection pk={stranger.pk} api_key" in output
    assert "Keep the old keys" in output
    assert raw_connection_value(stranger.pk, "api_key") == lost_token

    use_keys(NEW_KEY)  # restoring the lost key recovers it
    assert ProviderConnection.objects.get(pk=stranger.pk).api_key == stranger.api_key


def test_a_wrong_key_alone_reads_nothing_breaks_nothing_and_destroys_nothing(stored, use_keys):
    before = tokens(stored)
    use_keys(WRONG_KEY)
    output = rotate()
    assert "providers.ProviderConnection: rotated 0, already current 0" in output
    assert "undecryptable 3" in output
    assert tokens(stored) == before
    use_keys(TEST_KEY)
    assert {pk: ProviderConnection.objects.get(pk=pk).api_key for pk in stored} == stored


def test_plaintext_in_the_legacy_column_is_encrypted(alice, use_keys):
    settings_row = UserSettingsFactory(user=alice)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE user_settings SET openrouter_api_key = %s WHERE user_id = %s",
            [LEGACY_KEY, alice.pk],
        )
    output = rotate()
    assert "providers.UserSettings: rotated 0, already current 0, plaintext encrypted 1" in output
    assert keyring.decrypt(raw_legacy_value(settings_row.pk)) == LEGACY_KEY


def test_an_interrupted_rotation_keeps_finished_batches_and_a_re_run_completes(stored, use_keys):
    use_keys(NEW_KEY, TEST_KEY)
    real = keyring.rotate_if_stale
    connection_tokens = set(tokens(stored).values())
    seen = []

    def dies_on_the_third_connection(token):
        if token in connection_tokens:
            seen.append(token)
            if len(seen) == 3:
                raise KeyboardInterrupt
        return real(token)

    with (
        mock.patch.object(keyring, "rotate_if_stale", dies_on_the_third_connection),
        pytest.raises(KeyboardInterrupt),
    ):
        rotate("--batch-size", "2")
    current = [pk for pk, token in tokens(stored).items() if keyring.is_current(token)]
    assert len(current) == 2  # the first batch committed, the second rolled back

    output = rotate()
    assert "providers.ProviderConnection: rotated 1, already current 2" in output
    assert all(keyring.is_current(token) for token in tokens(stored).values())
