"""Settings › Providers: what each connection shows, whose connections, how many queries."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from doce import keyring
from providers import services
from providers.models import ProviderConnection
from tests.factories import ProviderConnectionFactory, UserSettingsFactory
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
URL = "/settings/providers/"


def rows(html: str) -> dict[str, str]:
    """{provider id: data-status} of every connection element."""
    return dict(re.findall(r'data-provider-id="([^"]+)" data-status="([^"]+)"', html))


def test_login_is_required(client, alice):
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_empty_page_offers_to_add_a_provider(alice_client):
    html = alice_client.get(URL).content.decode()
    assert "No provider connected yet" in html
    assert "+ Add provider" in html and 'href="/settings/providers/add/"' in html
    assert rows(html) == {}


def test_each_connection_shows_status_hint_last_use_and_actions(alice, alice_client):
    key = new_key("sk-ant-api03-")
    used = services.connection_create(user=alice, provider_id="anthropic", api_key=key)
    ProviderConnection.objects.filter(pk=used.pk).update(
        last_used_at=timezone.now() - timedelta(hours=2, minutes=5)
    )
    broken = services.connection_create(user=alice, provider_id="openai", api_key=new_key("sk-"))
    services.connection_mark_error(connection=broken, message="the provider said 401: bad key")
    html = alice_client.get(URL).content.decode()
    assert rows(html) == {"anthropic": "connected", "openai": "error"}
    assert used.key_hint in html and key not in html
    assert "last used 2 h ago" in html and "last used never" in html
    assert "the provider said 401: bad key" in html
    assert "Anthropic" in html  # the catalog's name (the built-in list here)
    for action in (
        "/settings/providers/anthropic/api-key/",
        "/settings/providers/anthropic/test/",
        "/settings/providers/anthropic/disconnect/",
    ):
        assert action in html


def test_a_key_that_cannot_be_decrypted_shows_as_error(alice, alice_client, settings):
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    settings.DOCE_ENCRYPTION_KEYS = [keyring.generate_key()]
    html = alice_client.get(URL).content.decode()
    assert rows(html) == {"anthropic": "error"}
    assert "cannot decrypt" in html


def test_oauth_expiry_warning_within_an_hour(alice, alice_client):
    now = timezone.now()
    for provider_id, expires in (
        ("github-copilot", now + timedelta(minutes=20)),
        ("soon-later", now + timedelta(hours=5)),
        ("gone", now - timedelta(hours=3)),
    ):
        services.connection_create(
            user=alice,
            provider_id=provider_id,
            auth_type="oauth",
            oauth_access_token=new_key("gho_"),
            oauth_refresh_token=new_key("ghr_"),
            oauth_expires_at=expires,
        )
    html = alice_client.get(URL).content.decode()
    warnings = re.findall(r"data-expiry-warning>([^<]+)<", html)
    assert len(warnings) == 2
    assert any(
        re.fullmatch(r"Token expires in (19|20) min, refreshes automatically\.", w)
        for w in warnings
    )
    assert any(
        re.fullmatch(r"Token expired 1(79|80) min ago, refreshes automatically at the next use.", w)
        for w in warnings
    )
    assert rows(html)["gone"] == "connected"  # OpenCode refreshes it: not "expired"


def test_not_verified_keys_are_marked(alice, alice_client):
    connection = services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    from providers.validation import UNVERIFIED, KeyCheck

    services.connection_record_check(
        connection=connection, check=KeyCheck(UNVERIFIED, "Anthropic could not be reached")
    )
    html = alice_client.get(URL).content.decode()
    assert rows(html) == {"anthropic": "connected"}
    assert "Not verified" in html and "Anthropic could not be reached" in html


def badges(html: str) -> dict[str, str]:
    """provider id -> the one state label its row shows."""
    found = {}
    for item in re.findall(r'<li class="connection".*?</li>', html, re.S):
        provider = re.search(r'data-provider-id="([^"]+)"', item).group(1)
        labels = re.findall(r"<span class=\"badge[^\"]*\"[^>]*>([^<]+)</span>", item)
        assert len(labels) == 1, labels  # one state per connection, never two
        found[provider] = labels[0]
    return found


def test_one_truthful_state_per_connection(alice, alice_client, provider_api):
    from providers.validation import UNVERIFIED, KeyCheck

    accepted = services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    services.connection_verify(connection=accepted)  # the stub accepts it
    offline = services.connection_create(user=alice, provider_id="openrouter", api_key=new_key())
    services.connection_record_check(
        connection=offline, check=KeyCheck(UNVERIFIED, "OpenRouter could not be reached")
    )
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    html = alice_client.get(URL).content.decode()
    assert badges(html) == {
        "openai": "Connected",  # the provider accepted the key
        "openrouter": "Not checked",  # offline: the check could not reach it
        "anthropic": "Not checked",  # saved without a check
    }
    assert rows(html) == dict.fromkeys(("openai", "openrouter", "anthropic"), "connected")
    assert "data-not-verified" in html and "OpenRouter could not be reached" in html

    # A new key is not the key the provider accepted.
    services.connection_update(connection=accepted, api_key=new_key())
    assert badges(alice_client.get(URL).content.decode())["openai"] == "Not checked"


def test_only_the_users_own_connections(alice, bob, alice_client):
    services.connection_create(user=bob, provider_id="groq", api_key=new_key("gsk_"))
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    assert rows(alice_client.get(URL).content.decode()) == {"anthropic": "connected"}


def test_the_query_count_does_not_grow_with_connections(
    alice, alice_client, django_assert_num_queries
):
    UserSettingsFactory(user=alice)

    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            assert alice_client.get(URL).status_code == 200
        return len(queries)

    ProviderConnectionFactory(user=alice, provider_id="anthropic")
    one = count()
    for index in range(12):
        ProviderConnectionFactory(
            user=alice,
            provider_id=f"custom-{index}",
            name=f"C{index}",
            base_url="http://127.0.0.1:1/v1",
            models=["m"],
        )
    for provider_id in ("openai", "groq", "google"):
        ProviderConnectionFactory(user=alice, provider_id=provider_id)
    assert count() == one
    with django_assert_num_queries(one):
        alice_client.get(URL)
    assert one <= 7  # 6, and the team keys granted to the user
