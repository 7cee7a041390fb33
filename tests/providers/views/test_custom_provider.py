"""/settings/providers/custom/: an OpenAI-compatible endpoint of the user's own."""

from __future__ import annotations

import pytest

from providers import services
from providers.models import AuditEvent, ProviderConnection
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
URL = "/settings/providers/custom/"


def form(**overrides) -> dict:
    data = {
        "provider_id": "my-ollama",
        "name": "Ollama",
        "base_url": "http://127.0.0.1:1/v1",
        "models": "llama3.1:8b\n  qwen3-coder \n\nllama3.1:8b\n",
        "api_key": "",
    }
    data.update(overrides)
    return data


def test_add_a_keyless_endpoint(alice, alice_client):
    response = alice_client.post(URL, form())
    assert response.status_code == 302 and response["Location"] == "/settings/providers/"
    connection = ProviderConnection.objects.get(user=alice, provider_id="my-ollama")
    assert (connection.name, connection.base_url) == ("Ollama", "http://127.0.0.1:1/v1")
    assert connection.models == ["llama3.1:8b", "qwen3-coder"]  # trimmed, deduplicated
    assert connection.api_key is None and connection.is_custom


def test_add_an_endpoint_with_a_key_checked_against_it(alice, alice_client, provider_api):
    key = new_key("sk-")
    response = alice_client.post(URL, form(base_url=provider_api.url + "/v1", api_key=key))
    assert response.status_code == 302 and key not in response["Location"]
    connection = ProviderConnection.objects.get(provider_id="my-ollama")
    assert connection.api_key == key and connection.last_validated_at is not None
    assert provider_api.seen[0].path == "/v1/models"


def test_a_key_the_endpoint_rejects_is_not_saved(alice, alice_client, provider_api):
    provider_api.reject("bad token")
    key = new_key("sk-")
    response = alice_client.post(URL, form(base_url=provider_api.url + "/v1", api_key=key))
    html = response.content.decode()
    assert "The endpoint rejected the key (401)" in html and key not in html
    assert "bad token" not in html
    assert not ProviderConnection.objects.exists()


def test_an_unreachable_endpoint_with_a_key_is_saved_not_verified(alice, alice_client):
    alice_client.post(URL, form(api_key=new_key("sk-")))
    connection = ProviderConnection.objects.get(provider_id="my-ollama")
    assert connection.error_message.startswith("Not verified: The endpoint could not be reached")


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"provider_id": "My Ollama"}, "provider_id", "Use lower-case letters"),
        ({"provider_id": ""}, "provider_id", "This field is required."),
        ({"provider_id": "openai"}, "provider_id", "a provider OpenCode already knows"),
        ({"provider_id": "deepseek"}, "provider_id", "a provider OpenCode already knows"),
        ({"provider_id": "custom"}, "provider_id", "That id is reserved"),
        ({"base_url": "ftp://127.0.0.1/v1"}, "base_url", "Enter an http:// or https:// URL"),
        ({"base_url": "javascript:alert(1)"}, "base_url", "Enter an http:// or https:// URL"),
        ({"base_url": "localhost:11434/v1"}, "base_url", "Enter an http:// or https:// URL"),
        (
            {"models": " \n \n"},  # discovery: nothing listens at 127.0.0.1:1
            "models",
            "Enter at least one model id: the endpoint did not list its models (The endpoint "
            "could not be reached).",
        ),
        ({"models": "llama 3"}, "models", "A model id is one word"),
        ({"models": "m-{env:HOME}"}, "models", "A model id is one word"),
        ({"name": "Mine {file:~/.ssh/id_rsa}"}, "name", "cannot contain “{env:” or “{file:”"),
        ({"models": "\n".join(f"m{i}" for i in range(501))}, "models", "At most 500 models"),
        ({"name": "  "}, "name", "This field is required."),
        ({"api_key": "sk-has\tcontrol-chars"}, "api_key", "control characters"),
        ({"api_key": "x" * 5000}, "api_key", "over 4 KB"),
        ({"api_key": "   "}, "api_key", "only spaces"),
    ],
)
def test_bad_input_gets_a_clear_error(alice_client, catalog, overrides, field, message):
    response = alice_client.post(URL, form(**overrides))
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors and message in " ".join(errors[field]), errors
    assert not ProviderConnection.objects.exists()


def test_an_id_the_user_already_has_is_refused(alice, alice_client):
    services.connection_create(
        user=alice,
        provider_id="my-ollama",
        name="Old",
        api_key=None,
        base_url="http://127.0.0.1:2/v1",
        models=["a"],
    )
    response = alice_client.post(URL, form())
    assert "You already have a provider called “my-ollama”." in response.content.decode()


def test_another_users_id_is_free(bob, alice, alice_client):
    services.connection_create(
        user=bob,
        provider_id="my-ollama",
        name="Bob's",
        api_key=None,
        base_url="http://127.0.0.1:2/v1",
        models=["a"],
    )
    assert alice_client.post(URL, form()).status_code == 302
    assert ProviderConnection.objects.filter(provider_id="my-ollama").count() == 2


def test_a_double_submit_makes_one_connection(alice, alice_client):
    key = new_key("sk-")
    assert alice_client.post(URL, form(api_key=key)).status_code == 302
    assert alice_client.post(URL, form(api_key=key)).status_code == 302
    assert ProviderConnection.objects.filter(user=alice).count() == 1
    assert AuditEvent.objects.filter(action="connected").count() == 1


def test_edit_keeps_the_key_unless_a_new_one_is_given(alice, alice_client):
    key = new_key("sk-")
    services.connection_create(
        user=alice,
        provider_id="my-ollama",
        name="Ollama",
        api_key=key,
        base_url="http://127.0.0.1:1/api",  # the form's origin: a new path alone keeps the key
        models=["a"],
    )
    edit = "/settings/providers/custom/my-ollama/edit/"
    page = alice_client.get(edit).content.decode()
    assert 'value="Ollama"' in page and "Leave empty to keep the stored key" in page
    assert key not in page
    response = alice_client.post(edit, form(provider_id="ignored", name="Ollama 2", models="b"))
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(user=alice)
    assert (connection.provider_id, connection.name, connection.models) == (
        "my-ollama",
        "Ollama 2",
        ["b"],
    )
    assert connection.api_key == key
    new = new_key("sk-")
    alice_client.post(edit, form(name="Ollama 2", api_key=new))
    connection.refresh_from_db()
    assert connection.api_key == new


def test_the_api_key_page_edits_a_custom_providers_key(alice, alice_client, provider_api):
    services.connection_create(
        user=alice,
        provider_id="my-ollama",
        name="Ollama",
        api_key=new_key("sk-"),
        base_url=provider_api.url + "/v1",
        models=["a"],
    )
    key = new_key("sk-")
    response = alice_client.post("/settings/providers/my-ollama/api-key/", {"api_key": key})
    assert response.status_code == 302
    assert ProviderConnection.objects.get(provider_id="my-ollama").api_key == key
    assert provider_api.seen[0].path == "/v1/models"


def test_editing_another_users_or_a_catalog_connection_answers_404(alice, bob, alice_client):
    services.connection_create(
        user=bob,
        provider_id="bobs",
        name="B",
        api_key=None,
        base_url="http://127.0.0.1:2/v1",
        models=["a"],
    )
    services.connection_create(user=alice, provider_id="anthropic", api_key=new_key())
    assert alice_client.get("/settings/providers/custom/bobs/edit/").status_code == 404
    assert alice_client.post("/settings/providers/custom/bobs/edit/", form()).status_code == 404
    assert alice_client.get("/settings/providers/custom/anthropic/edit/").status_code == 404
