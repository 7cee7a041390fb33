"""Keys that cannot be sent (non-ASCII) get a clear error on every form and in the admin,
never a 500; and no error page shows a key, DEBUG=true included."""

from __future__ import annotations

import sys

import pytest
from django.test import RequestFactory
from django.urls import reverse
from django.views.debug import technical_500_response

from providers import services, validation
from providers.models import ProviderConnection
from providers.views import connections as views
from tests.providers.conftest import admin_add_form, new_key

pytestmark = pytest.mark.django_db

ODD_KEYS = [
    pytest.param("sk-ключ-" + new_key(""), id="cyrillic"),
    pytest.param("sk-café" + new_key(""), id="accent"),
    pytest.param("sk-🔑" + new_key(""), id="emoji"),
    pytest.param("sk-or-v1-…" + new_key("")[-4:], id="hint"),
]
ASCII_ERROR = "An API key is plain ASCII text"
CUSTOM_URL = "/settings/providers/custom/"


def custom_form(**overrides) -> dict:
    data = {
        "provider_id": "my-ollama",
        "name": "Ollama",
        "base_url": "http://127.0.0.1:1/v1",
        "models": "llama3.1:8b",
        "api_key": "",
    }
    data.update(overrides)
    return data


# --- a clear error, not a 500 ---------------------------------------------------------------
@pytest.mark.parametrize("key", ODD_KEYS)
def test_the_api_key_form_explains_an_odd_key(alice_client, provider_api, key):
    response = alice_client.post("/settings/providers/openrouter/api-key/", {"api_key": key})
    html = response.content.decode()
    assert response.status_code == 200
    assert ASCII_ERROR in html and key not in html
    assert not ProviderConnection.objects.exists() and provider_api.seen == []


@pytest.mark.parametrize("key", ODD_KEYS)
def test_the_custom_endpoint_form_explains_an_odd_key(alice_client, provider_api, key):
    response = alice_client.post(
        CUSTOM_URL, custom_form(base_url=provider_api.url + "/v1", api_key=key)
    )
    assert response.status_code == 200
    assert ASCII_ERROR in " ".join(response.context["form"].errors["api_key"])
    assert key not in response.content.decode()
    assert not ProviderConnection.objects.exists() and provider_api.seen == []


@pytest.mark.parametrize("key", ODD_KEYS)
def test_the_services_refuse_an_odd_key_too(alice, key):
    with pytest.raises(services.ValidationError) as error:
        services.connection_create(user=alice, provider_id="openai", api_key=key)
    assert ASCII_ERROR in " ".join(error.value.message_dict["api_key"])


def test_test_on_a_stored_odd_key_gives_a_clean_message(alice, alice_client, provider_api):
    connection = services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    odd = "sk-ключ-" + new_key("")
    connection.api_key = odd  # stored before keys were checked
    connection.save()
    response = alice_client.post("/settings/providers/openai/test/", follow=True)
    html = response.content.decode()
    assert response.status_code == 200 and ASCII_ERROR in html and odd not in html
    connection.refresh_from_db()
    assert connection.status == "error" and connection.error_message.startswith(ASCII_ERROR)
    assert provider_api.seen == []


def _admin_add(bob, key: str) -> dict:
    return admin_add_form(bob, new_api_key=key)


@pytest.mark.parametrize("key", ODD_KEYS)
def test_the_admin_refuses_an_odd_key(admin_client, bob, key):
    response = admin_client.post(
        reverse("admin:providers_providerconnection_add"), _admin_add(bob, key)
    )
    html = response.content.decode()
    assert response.status_code == 200 and ASCII_ERROR in html and key not in html
    assert not ProviderConnection.objects.exists()


# --- error pages never show a key, DEBUG=true included --------------------------------------
def _boom(*args, **kwargs):
    raise RuntimeError("something broke after the key was checked")


def _assert_debug_page_hides(response, key: str) -> None:
    html = response.content.decode()
    assert response.status_code == 500
    assert "something broke after the key was checked" in html  # the technical 500 page
    assert key not in html


@pytest.fixture
def debug_client(alice_client, settings):
    settings.DEBUG = True
    alice_client.raise_request_exception = False
    return alice_client


def test_the_api_key_forms_debug_page_hides_the_key(debug_client, provider_api, monkeypatch):
    monkeypatch.setattr(services, "connection_record_check", _boom)
    key = new_key()
    response = debug_client.post("/settings/providers/openrouter/api-key/", {"api_key": key})
    _assert_debug_page_hides(response, key)


def test_the_custom_forms_debug_page_hides_the_key(debug_client, provider_api, monkeypatch):
    monkeypatch.setattr(services, "_initialize_settings", _boom)  # inside connection_create
    key = new_key("sk-")
    response = debug_client.post(
        CUSTOM_URL, custom_form(base_url=provider_api.url + "/v1", api_key=key)
    )
    _assert_debug_page_hides(response, key)


def test_the_test_buttons_debug_page_hides_the_key(alice, debug_client, provider_api, monkeypatch):
    key = new_key()
    services.connection_create(user=alice, provider_id="openai", api_key=key)
    monkeypatch.setattr(services, "connection_record_check", _boom)
    response = debug_client.post("/settings/providers/openai/test/")
    _assert_debug_page_hides(response, key)


def test_the_admins_debug_page_hides_the_key(admin_client, bob, settings, monkeypatch):
    settings.DEBUG = True
    admin_client.raise_request_exception = False
    monkeypatch.setattr(services, "_initialize_settings", _boom)
    key = "gsk_" + new_key("")
    response = admin_client.post(
        reverse("admin:providers_providerconnection_add"), _admin_add(bob, key)
    )
    _assert_debug_page_hides(response, key)


class _Abort(BaseException):
    """Not an Exception: nothing on the way catches it, so its traceback runs from the view
    down through the services and the key check to the point of failure."""


def _raised(view, request, *args):
    """The exc_info of ``_Abort`` raised through ``view`` (its traceback starts here,
    where no key is a local variable, as in Django's handler)."""
    try:
        view(request, *args)
    except _Abort:
        return sys.exc_info()
    pytest.fail("the failure did not reach the view")


def test_a_failure_deep_in_the_key_check_leaves_no_key_on_the_technical_500_page(
    alice, settings, monkeypatch
):
    settings.DEBUG = True

    def fail(url, headers, **kwargs):  # holds the URL and the headers with the key
        raise _Abort("failed while asking the provider")

    monkeypatch.setattr(validation, "_ask", fail)
    key = new_key()
    request = RequestFactory().post("/settings/providers/openrouter/api-key/", {"api_key": key})
    request.user = alice
    exc_info = _raised(views.provider_api_key, request, "openrouter")
    html = technical_500_response(request, *exc_info).content.decode()
    assert "failed while asking the provider" in html and "key_check" in html
    assert key not in html
