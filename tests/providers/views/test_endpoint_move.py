"""A custom endpoint whose base URL moves to another scheme, host or port forgets its
stored key and header values unless they are typed again in the same form: save, Test
and Re-scan never send them to the new address."""

from __future__ import annotations

import pytest

from providers import origins, services
from providers.models import AuditEvent, ProviderConnection
from tests.providers.conftest import new_key
from tests.providers.stubs import ProviderAPI

pytestmark = pytest.mark.django_db
EDIT = "/settings/providers/custom/my-gateway/edit/"


@pytest.fixture
def staff_alice(alice):
    # Loopback endpoints (the listeners below) are for administrators (providers.forms).
    alice.is_staff = True
    alice.save(update_fields=["is_staff"])
    return alice


@pytest.fixture
def listener():
    """A local endpoint that logs every request's headers."""
    with ProviderAPI() as api:
        yield api


@pytest.fixture
def gateway(staff_alice, listener):
    """alice's endpoint on one listener, with a stored key and a stored header value."""
    with ProviderAPI() as home:
        key = new_key("sk-")
        connection = services.connection_create(
            user=staff_alice,
            provider_id="my-gateway",
            name="Gateway",
            api_key=key,
            base_url=f"{home.url}/v1",
            models=["model-1"],
            secret_options={"headers": {"X-Org-Token": "org-secret-42"}},
        )
        yield connection, key, home


def edit_form(base_url: str, **overrides) -> dict:
    data = {
        "name": "Gateway",
        "base_url": base_url,
        "models": "",  # empty: the save asks the endpoint's /models
        "api_key": "",
        "headers": "",
    }
    data.update(overrides)
    return data


def sent_secrets(listener: ProviderAPI, key: str) -> list[str]:
    found = []
    for seen in listener.seen:
        text = repr(seen.headers)
        found += [secret for secret in (key, "org-secret-42") if secret in text]
    return found


def test_the_form_says_so_next_to_the_base_url(alice_client, gateway):
    page = alice_client.get(EDIT).content.decode()
    assert "Changing its scheme, host or port forgets the stored key and header values" in page


def test_a_new_host_never_sees_the_stored_key_on_save_test_or_rescan(
    alice_client, gateway, listener
):
    connection, key, _home = gateway
    # Only the base URL changes (the header lines are emptied: "Name:" alone is refused at
    # a new address, see below).
    response = alice_client.post(EDIT, edit_form(f"{listener.url}/v1"))
    assert response.status_code == 302, response.content.decode()
    response = alice_client.post(f"/settings/providers/{connection.provider_id}/test/")
    assert response.status_code == 302
    response = alice_client.post(f"/settings/providers/custom/{connection.provider_id}/rescan/")
    assert response.status_code in (200, 302)
    assert listener.seen, "the save asked the new endpoint's /models"
    assert all("authorization" not in seen.headers for seen in listener.seen)
    assert sent_secrets(listener, key) == []

    connection.refresh_from_db()
    assert connection.api_key is None and connection.secret_option_values == {}
    event = AuditEvent.objects.get(action=AuditEvent.Action.ENDPOINT_MOVED)
    assert event.detail["from"] == origins.origin_text(_home.url)
    assert event.detail["to"] == origins.origin_text(listener.url)
    assert event.detail["dropped"] == ["api_key", "headers"]
    assert key not in str(event.detail) and "org-secret-42" not in str(event.detail)
    assert event.actor_id == connection.user_id


def test_the_move_is_said_on_the_page(alice_client, gateway, listener):
    response = alice_client.post(EDIT, edit_form(f"{listener.url}/v1"), follow=True)
    assert "points to another address now" in response.content.decode()


def test_a_key_and_headers_typed_again_go_to_the_new_host(alice_client, gateway, listener):
    connection, key, _home = gateway
    new = new_key("sk-")
    data = edit_form(f"{listener.url}/v1", api_key=new, headers="X-Org-Token: typed-again-7")
    assert alice_client.post(EDIT, data).status_code == 302
    assert listener.seen[-1].headers["authorization"] == f"Bearer {new}"
    assert listener.seen[-1].headers["x-org-token"] == "typed-again-7"
    assert sent_secrets(listener, key) == []
    connection.refresh_from_db()
    assert connection.api_key == new
    assert connection.secret_option_values == {"headers": {"X-Org-Token": "typed-again-7"}}
    event = AuditEvent.objects.get(action=AuditEvent.Action.ENDPOINT_MOVED)
    assert event.detail["dropped"] == [] and event.detail["retyped"] == [
        "api_key",
        "secret_options",
    ]


def test_a_stored_header_name_alone_keeps_nothing_at_a_new_host(alice_client, gateway, listener):
    connection, key, _home = gateway
    response = alice_client.post(EDIT, edit_form(f"{listener.url}/v1", headers="X-Org-Token:"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "stored header values are not sent to a new address" in page
    assert listener.seen == []  # nothing was asked
    connection.refresh_from_db()
    assert connection.api_key == key  # nothing was saved either


@pytest.mark.parametrize(
    ("old", "new", "moved"),
    [
        ("http://h.example:8000/v1", "http://h.example:8000/v2", False),
        ("http://h.example/v1", "http://H.EXAMPLE:80/v1?x=1", False),
        ("https://h.example/v1", "https://h.example:443/v1", False),
        ("http://h.example/v1", "https://h.example/v1", True),
        ("http://h.example:8000/v1", "http://h.example:8001/v1", True),
        ("http://h.example/v1", "http://evil.example/v1", True),
        ("http://[::1]:8000/v1", "http://127.0.0.1:8000/v1", True),
    ],
)
def test_what_counts_as_a_move(old, new, moved):
    assert origins.origin_changed(old, new) is moved


def test_a_new_path_on_the_same_host_keeps_the_key(alice_client, gateway):
    connection, key, home = gateway
    data = edit_form(f"{home.url}/openai/v1", models="m", headers="X-Org-Token:")
    assert alice_client.post(EDIT, data).status_code == 302
    connection.refresh_from_db()
    assert connection.api_key == key
    assert connection.secret_option_values == {"headers": {"X-Org-Token": "org-secret-42"}}
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.ENDPOINT_MOVED).exists()


def test_the_service_forgets_them_for_every_caller(gateway, listener):
    connection, key, _home = gateway
    services.connection_update(connection=connection, base_url=f"{listener.url}/v1")
    connection = ProviderConnection.objects.get(pk=connection.pk)
    assert connection.api_key is None and connection.secret_option_values == {}
    assert AuditEvent.objects.filter(action=AuditEvent.Action.ENDPOINT_MOVED).count() == 1
