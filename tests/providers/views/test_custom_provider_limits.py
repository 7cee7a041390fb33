"""The custom-endpoint form's limits: blocked networks and credentials in the base URL are
refused when saved, the model list is capped and parsed in linear time, and the losing
request of a double submit gets the winner's answer."""

from __future__ import annotations

import socket
import time

import pytest
from django.core.exceptions import ImproperlyConfigured, ValidationError

from providers import services, validation
from providers.forms import MAX_MODEL_ID, MAX_MODELS, parse_models
from providers.models import AuditEvent, ProviderConnection
from tests.conftest import settings_from
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
URL = "/settings/providers/custom/"


def form(**overrides) -> dict:
    data = {
        "provider_id": "my-ollama",
        "name": "Ollama",
        "base_url": "http://127.0.0.1:1/v1",
        "models": "llama3.1:8b\nqwen3-coder",
        "api_key": "",
    }
    data.update(overrides)
    return data


def errors_of(response, field: str) -> str:
    assert response.status_code == 200
    return " ".join(response.context["form"].errors.get(field, []))


# --- blocked networks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://169.254.170.2/v1",
        "http://[fe80::1]:11434/v1",
        "http://[fd00:ec2::254]/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "http://0.0.0.0:11434/v1",
    ],
)
def test_an_endpoint_in_a_blocked_network_is_refused(alice_client, base_url):
    response = alice_client.post(URL, form(base_url=base_url, api_key=new_key("sk-")))
    assert "a network this server does not connect to" in errors_of(response, "base_url")
    assert not ProviderConnection.objects.exists()


def test_a_name_that_resolves_into_a_blocked_network_is_refused(alice_client, monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "metadata.example.test":
            return real("169.254.169.254", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    response = alice_client.post(URL, form(base_url="http://metadata.example.test/v1"))
    assert "a network this server does not connect to" in errors_of(response, "base_url")


@pytest.mark.parametrize(
    "base_url",
    [
        "http://127.0.0.1:11434/v1",
        "http://localhost:11434/v1",
        "http://[::1]:8080/v1",  # not 8001: the site preview, doce's own
    ],
)
def test_loopback_endpoints_the_operator_listed_are_allowed(alice_client, base_url):
    """The test settings list every loopback port (DOCE_ENDPOINT_ALLOW), as an operator
    lists a local model server; tests/providers/views/test_endpoint_rule.py has the rule
    without the list."""
    assert alice_client.post(URL, form(base_url=base_url)).status_code == 302
    assert ProviderConnection.objects.get().base_url == base_url


def test_the_operator_chooses_the_blocked_networks(admin_client, settings):
    settings.DOCE_ENDPOINT_BLOCKED_NETWORKS = ["10.0.0.0/8"]
    response = admin_client.post(URL, form(base_url="http://10.0.0.5:8000/v1"))
    assert "a network this server does not connect to" in errors_of(response, "base_url")
    ok = admin_client.post(URL, form(base_url="http://169.254.169.254/v1"))
    assert ok.status_code == 302  # not blocked any more (and staff may name it)


def test_test_on_an_endpoint_that_now_resolves_into_a_blocked_network(
    alice, alice_client, monkeypatch
):
    """DNS may change after the save: every use checks again, and connects to nothing."""
    key = new_key("sk-")
    services.connection_create(
        user=alice,
        provider_id="my-ollama",
        name="Ollama",
        api_key=key,
        base_url="http://rebound.example.test/v1",
        models=["m"],
    )
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket, "getaddrinfo", lambda host, *a, **k: real("169.254.169.254", *a, **k)
    )
    connects = []
    monkeypatch.setattr(socket.socket, "connect", lambda self, address: connects.append(address))
    response = alice_client.post("/settings/providers/my-ollama/test/", follow=True)
    assert "a network this server does not connect to" in response.content.decode()
    assert connects == []
    assert ProviderConnection.objects.get().status == "error"


@pytest.mark.parametrize("value", ["169.254.0.0/16,not-a-network", "10.0.0.0/33"])
def test_a_bad_blocked_networks_setting_stops_start_up(tmp_path, value):
    with pytest.raises(ImproperlyConfigured, match="^DOCE_ENDPOINT_BLOCKED_NETWORKS"):
        settings_from(tmp_path, DEBUG="true", DOCE_ENDPOINT_BLOCKED_NETWORKS=value)


# --- no credentials in the URL ----------------------------------------------------------------
@pytest.mark.parametrize(
    "base_url",
    [
        "http://admin:s3cret-pass@127.0.0.1:11434/v1",
        "https://token-abcdef@gateway.example.test/v1",
        "http://:s3cret-pass@127.0.0.1/v1",
    ],
)
def test_a_user_and_password_in_the_base_url_are_refused(alice_client, base_url):
    response = alice_client.post(URL, form(base_url=base_url))
    message = errors_of(response, "base_url")
    assert "put the key in the API key field" in message and "s3cret" not in message
    assert not ProviderConnection.objects.exists()


def test_the_services_refuse_credentials_in_a_base_url_too(alice):
    with pytest.raises(ValidationError) as error:
        services.connection_create(
            user=alice,
            provider_id="my-ollama",
            name="Ollama",
            base_url="http://admin:pw@127.0.0.1/v1",
            models=["m"],
        )
    assert "put the key in the API key field" in error.value.message_dict["base_url"][0]


# --- the model list ---------------------------------------------------------------------------
def test_parsing_a_long_model_list_is_linear():
    text = "\n".join(f"model-{i}" for i in range(40_000))
    started = time.monotonic()
    models = parse_models(text)
    took = time.monotonic() - started
    assert len(models) == 40_000 and models[:2] == ["model-0", "model-1"]
    assert took < 1.0, f"{took:.1f} s for 40,000 lines"
    assert parse_models(text, limit=MAX_MODELS + 1) == models[: MAX_MODELS + 1]
    assert parse_models(" a \n\nb\na\r\n b") == ["a", "b"]


def test_forty_thousand_model_ids_get_a_clear_error_fast(alice_client):
    text = "\n".join(f"m{i}" for i in range(40_000))
    started = time.monotonic()
    response = alice_client.post(URL, form(models=text))
    assert time.monotonic() - started < 5
    assert "too long for a list of model ids" in errors_of(response, "models")
    assert not ProviderConnection.objects.exists()


def test_more_than_500_models_are_refused_and_500_are_taken(alice, alice_client):
    too_many = "\n".join(f"m{i}" for i in range(MAX_MODELS + 1))
    response = alice_client.post(URL, form(models=too_many))
    assert f"At most {MAX_MODELS} models" in errors_of(response, "models")
    repeats = "\n".join(f"m{i % MAX_MODELS}" for i in range(MAX_MODELS * 2))  # 500 distinct
    assert alice_client.post(URL, form(models=repeats)).status_code == 302
    assert len(ProviderConnection.objects.get(user=alice).models) == MAX_MODELS


def test_a_model_id_is_at_most_255_characters(alice, alice_client):
    response = alice_client.post(URL, form(models="ok\n" + "m" * (MAX_MODEL_ID + 1)))
    assert f"A model id is at most {MAX_MODEL_ID} characters" in errors_of(response, "models")
    assert alice_client.post(URL, form(models="m" * MAX_MODEL_ID)).status_code == 302


# --- a double submit whose requests race ---------------------------------------------------
def _race(monkeypatch, user, **winner):
    """The other request of the double submit saves its endpoint while this one checks
    the key: between this request's form validation and its save."""
    real = validation.key_check

    def key_check_meanwhile(**kwargs):
        services.connection_create(user=user, **winner)
        return real(**kwargs)

    monkeypatch.setattr(validation, "key_check", key_check_meanwhile)


def test_the_losing_request_of_a_race_gets_the_same_success(alice, alice_client, monkeypatch):
    key = new_key("sk-")
    _race(
        monkeypatch,
        alice,
        provider_id="my-ollama",
        name="Ollama",
        base_url="http://127.0.0.1:1/v1",
        models=["llama3.1:8b", "qwen3-coder"],
        api_key=key,
    )
    response = alice_client.post(URL, form(api_key=key))
    assert response.status_code == 302 and response["Location"] == "/settings/providers/"
    page = alice_client.get("/settings/providers/").content.decode()
    assert "Connected Ollama." in page and "already connected" not in page
    assert ProviderConnection.objects.filter(user=alice).count() == 1
    assert AuditEvent.objects.filter(action="connected").count() == 1


def test_the_losing_htmx_request_gets_the_same_client_redirect(alice, alice_client, monkeypatch):
    _race(
        monkeypatch,
        alice,
        provider_id="my-ollama",
        name="Ollama",
        base_url="http://127.0.0.1:1/v1",
        models=["llama3.1:8b", "qwen3-coder"],
    )
    response = alice_client.post(URL, form(), headers={"HX-Request": "true"})
    assert response.status_code == 200 and response["HX-Redirect"] == "/settings/providers/"


def test_a_race_with_a_different_endpoint_is_still_a_conflict(alice, alice_client, monkeypatch):
    _race(
        monkeypatch,
        alice,
        provider_id="my-ollama",
        name="Someone else's",
        base_url="http://127.0.0.1:2/v1",
        models=["other"],
    )
    response = alice_client.post(URL, form())
    assert "my-ollama is already connected." in errors_of(response, "provider_id")
    assert ProviderConnection.objects.get(user=alice).name == "Someone else's"
