"""Disconnect: a confirmation (a dialog with htmx), then POST deletes and audits."""

from __future__ import annotations

import pytest
from django.test import Client

from providers import services
from providers.models import AuditEvent, ProviderConnection
from providers.signals import credential_removed
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db


def url(provider_id: str) -> str:
    return f"/settings/providers/{provider_id}/disconnect/"


def test_get_asks_for_confirmation(alice, alice_client):
    key = new_key()
    services.connection_create(user=alice, provider_id="anthropic", api_key=key)
    page = alice_client.get(url("anthropic")).content.decode()
    assert "Disconnect Anthropic?" in page and 'method="post"' in page and key not in page
    fragment = alice_client.get(url("anthropic"), headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith("<section") and "<html" not in fragment
    assert ProviderConnection.objects.filter(user=alice).exists()


def test_post_deletes_audits_and_tells_running_projects(
    alice, alice_client, django_capture_on_commit_callbacks
):
    connection = services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    removed = []

    def listener(sender, **kwargs):
        removed.append(kwargs)

    credential_removed.connect(listener)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = alice_client.post(url("anthropic"))
    finally:
        credential_removed.disconnect(listener)
    assert response.status_code == 302 and response["Location"] == "/settings/providers/"
    assert not ProviderConnection.objects.filter(pk=connection.pk).exists()
    assert AuditEvent.objects.filter(action="disconnected", provider_id="anthropic").exists()
    assert removed == [
        {"signal": credential_removed, "user_id": alice.pk, "provider_id": "anthropic"}
    ]
    assert "Disconnected Anthropic." in alice_client.get("/settings/providers/").content.decode()


def test_a_double_submit_is_harmless(alice, alice_client):
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    assert alice_client.post(url("anthropic")).status_code == 302
    second = alice_client.post(url("anthropic"))
    assert second.status_code == 302 and second["Location"] == "/settings/providers/"
    htmx = alice_client.post(url("anthropic"), headers={"HX-Request": "true"})
    assert htmx["HX-Redirect"] == "/settings/providers/"
    assert AuditEvent.objects.filter(action="disconnected").count() == 1


def test_another_users_connection_answers_404(alice, bob, alice_client):
    services.connection_create(user=bob, provider_id="anthropic", api_key=new_key())
    assert alice_client.get(url("anthropic")).status_code == 404
    assert alice_client.post(url("anthropic")).status_code == 404
    assert ProviderConnection.objects.filter(user=bob).exists()


def test_csrf_is_required(alice):
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(url("anthropic")).status_code == 403
    assert ProviderConnection.objects.filter(user=alice).exists()
