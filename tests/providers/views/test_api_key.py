"""/settings/providers/<id>/api-key/: connect or re-enter a key, checked with the provider."""

from __future__ import annotations

import pytest
from django.core.signals import got_request_exception
from django.test import Client
from django.views.debug import SafeExceptionReporterFilter

from providers import services, validation
from providers.credentials import opencode_credential
from providers.models import AuditEvent, ProviderConnection
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db


def url(provider_id: str) -> str:
    return f"/settings/providers/{provider_id}/api-key/"


def assert_no_leak(response, key: str) -> None:
    assert key not in response.content.decode()
    assert key not in response.get("Location", "")
    assert key not in response.get("HX-Redirect", "")


def test_the_form_asks_for_the_key_and_never_shows_one(alice, alice_client, catalog):
    key = new_key()
    services.connection_create(user=alice, provider_id="openrouter", api_key=key)
    response = alice_client.get(url("openrouter"))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'name="api_key"' in html and 'type="password"' in html
    assert "Enter the key again to replace it" in html
    assert_no_leak(response, key)


def test_a_valid_key_is_checked_saved_and_stamped(alice, alice_client, provider_api):
    key = new_key()
    response = alice_client.post(url("openrouter"), {"api_key": f"  {key}\n"})
    assert response.status_code == 302 and response["Location"] == "/settings/providers/"
    assert_no_leak(response, key)
    connection = ProviderConnection.objects.get(user=alice, provider_id="openrouter")
    assert connection.api_key == key and connection.status == "connected"
    assert connection.last_validated_at is not None and connection.error_message == ""
    [seen] = provider_api.seen
    assert seen.path == "/api/v1/auth/key"
    assert seen.headers["authorization"] == f"Bearer {key}"
    assert AuditEvent.objects.filter(connection=connection, action="validated").exists()
    page = alice_client.get("/settings/providers/").content.decode()
    assert "Connected OpenRouter." in page and key not in page


def test_a_rejected_key_is_not_saved_and_the_status_is_shown(alice, alice_client, provider_api):
    key = new_key()
    provider_api.reject(f"No auth credentials found for {key}")  # a provider that echoes it
    response = alice_client.post(url("openrouter"), {"api_key": key})
    html = response.content.decode()
    assert response.status_code == 200
    assert "OpenRouter rejected the key (401)" in html
    assert "No auth credentials found" not in html  # never the remote's words
    assert_no_leak(response, key)
    assert not ProviderConnection.objects.exists()
    event = AuditEvent.objects.get(action="validation_failed")
    assert event.user == alice and event.provider_id == "openrouter"
    assert key not in str(event.detail)


def test_a_rejected_new_key_leaves_the_old_one(alice, alice_client, provider_api):
    old = new_key()
    services.connection_create(user=alice, provider_id="openai", api_key=old)
    provider_api.answer(403, {"error": {"message": "Your account is not active"}})
    response = alice_client.post(url("openai"), {"api_key": new_key("sk-proj-")})
    assert "OpenAI rejected the key (403)" in response.content.decode()
    assert ProviderConnection.objects.get(provider_id="openai").api_key == old


def test_an_unreachable_provider_saves_the_key_as_not_verified(alice, alice_client):
    key = new_key("sk-ant-api03-")
    response = alice_client.post(url("anthropic"), {"api_key": key}, follow=True)
    connection = ProviderConnection.objects.get(user=alice, provider_id="anthropic")
    assert connection.api_key == key and connection.status == "connected"
    assert connection.last_validated_at is None
    assert connection.error_message.startswith("Not verified: Anthropic could not be reached")
    html = response.content.decode()
    assert "saved as not verified" in html and "data-not-verified" in html
    assert key not in html


def test_a_provider_without_a_check_is_saved_unchecked(alice, alice_client, catalog):
    response = alice_client.post(url("deepseek"), {"api_key": new_key("sk-")})
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(provider_id="deepseek")
    assert connection.status == "connected" and connection.error_message == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "Enter the API key."),
        ("   \t  ", "The key is only spaces"),
        ("sk-" + "a" * 4100, "too long for an API key (over 4 KB)"),
        ("sk-abc\x00def1234567", "control characters"),
        ("sk-abc\x1bdef1234567", "control characters"),
        ("sk-abc\u200bdef1234567", "control characters"),
        ("sk-abc\ndef1234567", "control characters"),
        ("sk-abc def1234567", "contains spaces"),
    ],
)
def test_bad_keys_get_a_clear_error(alice, alice_client, provider_api, value, message):
    response = alice_client.post(url("openrouter"), {"api_key": value})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not ProviderConnection.objects.exists()
    assert provider_api.seen == []  # nothing bad is sent to the provider


def test_prompt_inputs_become_fields_and_metadata(alice, alice_client, catalog):
    page = alice_client.get(url("cloudflare-workers-ai")).content.decode()
    assert 'name="accountId"' in page and "Enter your Cloudflare Account ID" in page
    missing = alice_client.post(url("cloudflare-workers-ai"), {"api_key": new_key("cf-")})
    assert "This is needed to connect." in missing.content.decode()
    assert not ProviderConnection.objects.exists()
    alice_client.post(
        url("cloudflare-workers-ai"), {"api_key": new_key("cf-"), "accountId": "abc123"}
    )
    connection = ProviderConnection.objects.get(provider_id="cloudflare-workers-ai")
    assert connection.metadata == {"accountId": "abc123"}
    assert opencode_credential(connection).to_json()["metadata"] == {"accountId": "abc123"}
    edit = alice_client.get(url("cloudflare-workers-ai")).content.decode()
    assert 'value="abc123"' in edit  # non-secret: shown back for editing


def test_edit_replaces_the_key_and_revives_an_error(alice, alice_client, provider_api):
    connection = services.connection_create(user=alice, provider_id="groq", api_key=new_key("gsk_"))
    services.connection_mark_error(connection=connection, message="rejected")
    key = new_key("gsk_")
    response = alice_client.post(url("groq"), {"api_key": key}, follow=True)
    connection.refresh_from_db()
    assert connection.api_key == key and connection.status == "connected"
    assert "Saved the new key for Groq." in response.content.decode()
    assert provider_api.seen[0].path == "/openai/v1/models"


def test_a_double_submit_makes_one_connection(alice, alice_client, provider_api):
    key = new_key()
    first = alice_client.post(url("openrouter"), {"api_key": key})
    second = alice_client.post(url("openrouter"), {"api_key": key})
    assert first.status_code == second.status_code == 302
    assert ProviderConnection.objects.filter(user=alice).count() == 1
    assert AuditEvent.objects.filter(action="connected").count() == 1
    assert AuditEvent.objects.filter(action="updated").count() == 0


def test_htmx_answers_the_fragment_and_a_client_redirect(alice, alice_client, provider_api):
    headers = {"HX-Request": "true"}
    form = alice_client.get(url("openrouter"), headers=headers).content.decode()
    assert form.lstrip().startswith("<section") and "<html" not in form
    bad = alice_client.post(url("openrouter"), {"api_key": " "}, headers=headers)
    assert bad.status_code == 200 and "only spaces" in bad.content.decode()
    key = new_key()
    good = alice_client.post(url("openrouter"), {"api_key": key}, headers=headers)
    assert good.status_code == 200 and good["HX-Redirect"] == "/settings/providers/"
    assert_no_leak(good, key)


def test_unknown_and_sign_in_only_providers_answer_404(alice_client, catalog):
    assert alice_client.get(url("no-such-provider")).status_code == 404
    assert alice_client.post(url("no-such-provider"), {"api_key": new_key()}).status_code == 404
    assert alice_client.get(url("github-copilot")).status_code == 404  # OAuth only


def test_another_users_custom_provider_answers_404(bob, alice_client):
    services.connection_create(
        user=bob,
        provider_id="bobs-llm",
        name="Bob",
        api_key=new_key(),
        base_url="http://127.0.0.1:1/v1",
        models=["m"],
    )
    assert alice_client.get(url("bobs-llm")).status_code == 404
    assert alice_client.post(url("bobs-llm"), {"api_key": new_key()}).status_code == 404


def test_csrf_is_required(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(url("openrouter"), {"api_key": new_key()}).status_code == 403
    assert not ProviderConnection.objects.exists()


def test_attempts_are_rate_limited(alice, alice_client, provider_api, settings):
    settings.DOCE_PROVIDER_ATTEMPTS = 3
    for _ in range(3):
        assert alice_client.post(url("openrouter"), {"api_key": new_key()}).status_code == 302
    response = alice_client.post(url("openrouter"), {"api_key": new_key()})
    assert "Too many attempts" in response.content.decode()
    assert len(provider_api.seen) == 3


def test_the_key_is_hidden_from_error_reports(alice, alice_client, monkeypatch):
    seen = []

    def boom(**kwargs):
        raise RuntimeError("provider check exploded")

    def capture(sender, request, **kwargs):
        seen.append(SafeExceptionReporterFilter().get_post_parameters(request))

    monkeypatch.setattr(validation, "key_check", boom)
    got_request_exception.connect(capture)
    alice_client.raise_request_exception = False
    key = new_key()
    try:
        response = alice_client.post(url("openrouter"), {"api_key": key})
    finally:
        got_request_exception.disconnect(capture)
    assert response.status_code == 500
    assert seen and seen[0]["api_key"] != key and "*" in seen[0]["api_key"]


def test_an_empty_post_asks_for_the_key(alice_client, provider_api):
    response = alice_client.post(url("openrouter"))
    assert response.status_code == 200 and "Enter the API key." in response.content.decode()
    assert not ProviderConnection.objects.exists() and provider_api.seen == []
