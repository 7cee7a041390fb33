"""Test: the local checks, then the provider's API (services.connection_verify)."""

from __future__ import annotations

import pytest

from providers import services
from providers.models import AuditEvent
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db


def url(provider_id: str) -> str:
    return f"/settings/providers/{provider_id}/test/"


def test_a_working_key_is_stamped(alice, alice_client, provider_api):
    connection = services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    response = alice_client.post(url("openai"), follow=True)
    connection.refresh_from_db()
    assert connection.status == "connected" and connection.last_validated_at is not None
    assert "openai: the provider accepted the key." in response.content.decode()
    assert provider_api.seen[0].path == "/v1/models"
    assert AuditEvent.objects.filter(connection=connection, action="validated").count() == 2


def test_a_rejected_key_marks_the_connection_error(alice, alice_client, provider_api):
    key = new_key()
    connection = services.connection_create(user=alice, provider_id="openrouter", api_key=key)
    provider_api.reject("User not found.")
    response = alice_client.post(url("openrouter"), follow=True)
    connection.refresh_from_db()
    assert connection.status == "error"
    assert connection.error_message == "OpenRouter rejected the key (401)"
    html = response.content.decode()
    assert 'data-status="error"' in html and "rejected the key (401)" in html
    assert "User not found." not in html and key not in html


def test_an_unreachable_provider_leaves_it_connected_but_not_verified(alice, alice_client):
    connection = services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    alice_client.post(url("anthropic"))
    connection.refresh_from_db()
    assert connection.status == "connected" and connection.last_validated_at is not None
    assert connection.error_message.startswith("Not verified: Anthropic could not be reached")


def test_a_later_success_clears_the_error(alice, alice_client, provider_api):
    connection = services.connection_create(user=alice, provider_id="groq", api_key=new_key())
    provider_api.reject()
    alice_client.post(url("groq"))
    provider_api.answer(200, {"data": []})
    alice_client.post(url("groq"))
    connection.refresh_from_db()
    assert (connection.status, connection.error_message) == ("connected", "")


def test_local_problems_stop_before_the_provider(alice, alice_client, provider_api, settings):
    from doce import keyring

    services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    settings.DOCE_ENCRYPTION_KEYS = [keyring.generate_key()]
    response = alice_client.post(url("openai"), follow=True)
    assert "cannot decrypt" in response.content.decode()
    assert provider_api.seen == []


def test_htmx_gets_the_row_with_the_message(alice, alice_client, provider_api):
    services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    response = alice_client.post(url("openai"), headers={"HX-Request": "true"})
    html = response.content.decode()
    assert html.strip().startswith("<li") and 'data-provider-id="openai"' in html
    assert "the provider accepted the key" in html
    # The message was shown in the row: the next page does not repeat it.
    assert (
        "the provider accepted the key"
        not in alice_client.get("/settings/providers/").content.decode()
    )


def test_oauth_connections_get_the_local_checks_only(alice, alice_client, provider_api):
    services.connection_create(
        user=alice,
        provider_id="github-copilot",
        auth_type="oauth",
        oauth_access_token="a" * 20,
        oauth_refresh_token="r" * 20,
    )
    response = alice_client.post(url("github-copilot"), follow=True)
    assert "the connection looks fine" in response.content.decode()
    assert provider_api.seen == []


def test_rate_limited(alice, alice_client, provider_api, settings):
    settings.DOCE_PROVIDER_ATTEMPTS = 2
    services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    for _ in range(2):
        alice_client.post(url("openai"))
    response = alice_client.post(url("openai"), follow=True)
    assert "Too many attempts to connect or test providers. Wait" in response.content.decode()
    assert len(provider_api.seen) == 2


def test_post_only_and_own_connections_only(alice, bob, alice_client):
    services.connection_create(user=bob, provider_id="openai", api_key=new_key())
    assert alice_client.post(url("openai")).status_code == 404
    services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    assert alice_client.get(url("openai")).status_code == 405
