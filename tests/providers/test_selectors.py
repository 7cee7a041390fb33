"""What the settings page will list: one query, the owner's rows only, never a crash."""

import pytest

from providers import services
from providers.selectors import connections_for_user, legacy_keys_pending
from tests.factories import UserSettingsFactory
from tests.providers.conftest import TEST_KEY, WRONG_KEY

pytestmark = pytest.mark.django_db


def test_a_users_connections_in_one_query_with_what_to_show(
    alice, bob, use_keys, django_assert_num_queries
):
    for provider_id in ("anthropic", "openai", "groq"):
        services.connection_create(user=alice, provider_id=provider_id, api_key="k" * 24)
    services.connection_create(user=bob, provider_id="anthropic", api_key="b" * 24)
    use_keys(WRONG_KEY, TEST_KEY)
    services.connection_create(user=alice, provider_id="google", api_key="g" * 24)
    use_keys(TEST_KEY)  # google's key was made with a key that is gone now

    with django_assert_num_queries(1):
        shown = [
            (c.provider_id, c.key_hint, c.effective_status, c.effective_error_message)
            for c in connections_for_user(user=alice)
        ]
    assert shown == [
        ("anthropic", "…kkkk", "connected", ""),
        ("google", "…gggg", "error", "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"),
        ("groq", "…kkkk", "connected", ""),
        ("openai", "…kkkk", "connected", ""),
    ]


def test_pending_legacy_keys(alice, bob):
    UserSettingsFactory(user=alice, openrouter_api_key=("sk-or-" + "v1-pending-0123456789"))
    UserSettingsFactory(user=bob)
    assert [row.user for row in legacy_keys_pending()] == [alice]
