"""The settings pages' provider options: Azure, Amazon Bedrock and Google Vertex on the
API-key page, a custom endpoint's headers on its form. Secrets are stored encrypted and
never shown back; bad input is a form error, never a 500; another user's connection is
a 404."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from providers import services
from providers.catalog import catalog_store
from providers.models import AuditEvent, ProviderConnection
from tests.providers.conftest import new_key, raw_connection_value
from tests.providers.test_provider_options import (
    ACCESS_KEY_ID,
    SECRET_ACCESS_KEY,
    service_account,
)

pytestmark = pytest.mark.django_db
CUSTOM = "/settings/providers/custom/"

CATALOG = [
    {
        "id": "azure",
        "name": "Azure",
        "env": ["AZURE_RESOURCE_NAME", "AZURE_API_KEY"],
        "models": [["gpt-5.4", "GPT-5.4"]],
        # As OpenCode 1.18.33's /provider/auth gives it.
        "auth_methods": [
            {
                "type": "api",
                "label": "API key",
                "prompts": [
                    {
                        "type": "text",
                        "key": "resourceName",
                        "message": "Enter Azure Resource Name",
                        "placeholder": "e.g. my-models",
                    }
                ],
            }
        ],
    },
    {
        "id": "amazon-bedrock",
        "name": "Amazon Bedrock",
        "env": ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"],
        "models": [["google.gemma-3-12b-it", "Gemma 3 12B"]],
        "auth_methods": [],
    },
    {
        "id": "google-vertex",
        "name": "Vertex",
        "env": ["GOOGLE_VERTEX_PROJECT", "GOOGLE_APPLICATION_CREDENTIALS"],
        "models": [["gemini-flash-latest", "Gemini Flash Latest"]],
        "auth_methods": [],
    },
]


@pytest.fixture
def option_catalog(db):
    catalog_store(CATALOG, opencode_version="1.18.33")


def url(provider_id: str) -> str:
    return f"/settings/providers/{provider_id}/api-key/"


def test_azure_asks_for_its_resource_name_once_and_stores_it_as_an_option(
    alice, alice_client, option_catalog
):
    html = alice_client.get(url("azure")).content.decode()
    assert html.count('name="resourceName"') == 1 and 'name="api_key"' in html
    key = new_key("az-")
    response = alice_client.post(url("azure"), {"api_key": key, "resourceName": "my-models"})
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(user=alice, provider_id="azure")
    assert connection.options == {"resourceName": "my-models"} and connection.api_key == key
    assert connection.metadata == {}

    # The edit page shows the name, not the key; an empty key keeps it.
    html = alice_client.get(url("azure")).content.decode()
    assert 'value="my-models"' in html and key not in html and "leave empty to keep it" in html
    alice_client.post(url("azure"), {"api_key": "", "resourceName": "my-models"})
    connection.refresh_from_db()
    assert connection.options == {"resourceName": "my-models"} and connection.api_key == key


def test_a_new_azure_resource_name_needs_the_key_typed_again(alice, alice_client, option_catalog):
    # The resource name is the host the key goes to (https://NAME.openai.azure.com): the
    # stored key never follows it to another resource.
    key = new_key("az-")
    alice_client.post(url("azure"), {"api_key": key, "resourceName": "my-models"})
    html = alice_client.get(url("azure")).content.decode()
    assert "Changing it forgets the stored key" in html  # said next to the field
    response = alice_client.post(url("azure"), {"api_key": "", "resourceName": "other-models"})
    assert response.status_code == 200
    assert "Azure resource name changed: enter the key again" in response.content.decode()
    connection = ProviderConnection.objects.get(user=alice, provider_id="azure")
    assert connection.options == {"resourceName": "my-models"} and connection.api_key == key

    other = new_key("az-")
    response = alice_client.post(url("azure"), {"api_key": other, "resourceName": "other-models"})
    assert response.status_code == 302
    connection.refresh_from_db()
    assert connection.options == {"resourceName": "other-models"} and connection.api_key == other
    event = AuditEvent.objects.get(action=AuditEvent.Action.ENDPOINT_MOVED)
    assert event.detail["options"] == {"resourceName": ["my-models", "other-models"]}
    assert event.detail["retyped"] == ["api_key", "secret_options"] and key not in str(event.detail)


def test_bad_or_non_ascii_values_are_form_errors(alice, alice_client, option_catalog):
    for value in ("my models", "mödels", "x" * 500, "a\x00b"):
        response = alice_client.post(url("azure"), {"api_key": new_key(), "resourceName": value})
        assert response.status_code == 200, value
        assert "resourceName" in response.content.decode()
    response = alice_client.post(
        url("google-vertex"),
        {"project": "my-project-123", "serviceAccount": '{"type": "sérvice"}'},
    )
    assert response.status_code == 200 and "ASCII" in response.content.decode()
    assert not ProviderConnection.objects.exists()


def test_bedrock_with_access_keys_and_no_api_key(alice, alice_client, option_catalog):
    response = alice_client.post(
        url("amazon-bedrock"),
        {
            "api_key": "",
            "region": "eu-west-3",
            "accessKeyId": ACCESS_KEY_ID,
            "secretAccessKey": SECRET_ACCESS_KEY,
        },
    )
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(user=alice, provider_id="amazon-bedrock")
    assert connection.api_key is None and connection.options == {"region": "eu-west-3"}
    assert SECRET_ACCESS_KEY not in raw_connection_value(connection.pk, "secret_options")

    html = alice_client.get(url("amazon-bedrock")).content.decode()
    assert SECRET_ACCESS_KEY not in html and ACCESS_KEY_ID not in html
    # Changing the region keeps the keys.
    alice_client.post(url("amazon-bedrock"), {"region": "us-west-2"})
    connection.refresh_from_db()
    assert connection.options == {"region": "us-west-2"}
    assert connection.secret_option_values["secretAccessKey"] == SECRET_ACCESS_KEY

    # Neither a key nor access keys: nothing to sign in with.
    ProviderConnection.objects.all().delete()
    response = alice_client.post(url("amazon-bedrock"), {"region": "us-west-2"})
    assert response.status_code == 200 and "Give an API key" in response.content.decode()


def test_vertex_takes_a_service_account_and_no_key(alice, alice_client, option_catalog):
    html = alice_client.get(url("google-vertex")).content.decode()
    assert 'name="api_key"' not in html and 'name="serviceAccount"' in html
    key_json = service_account()
    response = alice_client.post(
        url("google-vertex"),
        {"project": "my-project-123", "location": "europe-west4", "serviceAccount": key_json},
    )
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(user=alice, provider_id="google-vertex")
    assert connection.options == {"project": "my-project-123", "location": "europe-west4"}
    private_key = json.loads(key_json)["private_key"]
    html = alice_client.get(url("google-vertex")).content.decode()
    assert private_key[40:60] not in html and "A value is stored" in html


def test_the_picker_names_what_each_provider_takes(alice_client, option_catalog):
    """Vertex takes a service account, not an API key: the picker says so."""
    vertex = alice_client.get("/settings/providers/google-vertex/").content.decode()
    assert "Service account" in vertex and "paste a service-account key (JSON)" in vertex
    assert "paste an API key" not in vertex
    bedrock = alice_client.get("/settings/providers/amazon-bedrock/").content.decode()
    assert "paste an API key, or an access key id and its secret" in bedrock
    azure = alice_client.get("/settings/providers/azure/").content.decode()
    assert ">API key</a>" in azure and "paste an API key<" in azure


def test_a_custom_endpoint_keeps_its_header_values_secret(alice, alice_client):
    token = new_key("hdr-")
    response = alice_client.post(
        CUSTOM,
        {
            "provider_id": "gw",
            "name": "Gateway",
            "base_url": "http://127.0.0.1:1/v1",
            "models": "m1",
            "api_key": "",
            "headers": f"X-Org: 12\nX-Token: {token}",
        },
    )
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(user=alice, provider_id="gw")
    assert connection.secret_option_values == {"headers": {"X-Org": "12", "X-Token": token}}
    assert token not in raw_connection_value(connection.pk, "secret_options")
    assert connection.option_names == ["header X-Org", "header X-Token"]

    edit = f"{CUSTOM}gw/edit/"
    html = alice_client.get(edit).content.decode()
    assert "X-Token:" in html and token not in html
    # Submitted as shown ("Name:" lines): the values stay; a line left out goes.
    alice_client.post(
        edit,
        {
            "name": "Gateway",
            "base_url": "http://127.0.0.1:1/v1",
            "models": "m1",
            "headers": "X-Token:",
        },
    )
    connection.refresh_from_db()
    assert connection.secret_option_values == {"headers": {"X-Token": token}}

    response = alice_client.post(
        edit,
        {
            "name": "Gateway",
            "base_url": "http://127.0.0.1:1/v1",
            "models": "m1",
            "headers": "Bad Name: 1",
        },
    )
    assert response.status_code == 200 and "header name" in response.content.decode()


def test_another_users_connection_is_a_404(alice, bob, option_catalog):
    services.connection_create(
        user=alice,
        provider_id="gw",
        name="Gateway",
        base_url="http://127.0.0.1:1/v1",
        models=["m"],
        secret_options={"headers": {"X-Token": "alice-secret"}},
    )
    services.connection_create(
        user=alice, provider_id="azure", api_key=new_key(), options={"resourceName": "alices"}
    )
    client = Client()
    client.force_login(bob)
    assert client.get(f"{CUSTOM}gw/edit/").status_code == 404
    assert client.post(f"{CUSTOM}gw/edit/", {"headers": "X-Token:"}).status_code == 404
    html = client.get(url("azure")).content.decode()
    assert "alices" not in html  # bob's own, empty form


def test_the_endpoints_key_check_sends_its_headers(alice, alice_client, provider_api):
    key, token = new_key("sk-"), new_key("hdr-")
    response = alice_client.post(
        CUSTOM,
        {
            "provider_id": "gw",
            "name": "Gateway",
            "base_url": provider_api.url + "/v1",
            "models": "",
            "api_key": key,
            "headers": f"X-Token: {token}",
        },
    )
    assert response.status_code == 302
    seen = provider_api.seen[-1]
    assert seen.path == "/v1/models" and seen.headers["x-token"] == token
    assert seen.headers["authorization"] == f"Bearer {key}"
    # The Test button and a re-scan send the stored headers too.
    provider_api.seen.clear()
    alice_client.post("/settings/providers/gw/test/")
    alice_client.post(f"{CUSTOM}gw/rescan/")
    assert [s.headers.get("x-token") for s in provider_api.seen] == [token, token]


def test_the_list_names_the_options_and_never_shows_a_value(alice, alice_client):
    services.connection_create(
        user=alice,
        provider_id="amazon-bedrock",
        options={"region": "eu-west-3"},
        secret_options={"accessKeyId": ACCESS_KEY_ID, "secretAccessKey": SECRET_ACCESS_KEY},
    )
    html = alice_client.get("/settings/providers/").content.decode()
    assert "options: region, accessKeyId, secretAccessKey" in html
    assert SECRET_ACCESS_KEY not in html and ACCESS_KEY_ID not in html


def test_the_test_button_finds_a_keyless_vertex_connection_fine(alice, alice_client):
    services.connection_create(
        user=alice,
        provider_id="google-vertex",
        options={"project": "my-project-123"},
        secret_options={"serviceAccount": service_account()},
    )
    alice_client.post("/settings/providers/google-vertex/test/")
    connection = ProviderConnection.objects.get(provider_id="google-vertex")
    assert connection.status == ProviderConnection.Status.CONNECTED
    assert connection.error_message == ""
