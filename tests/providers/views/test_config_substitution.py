"""One shared rule (doce.inputs.refuse_config_substitution): no field a user types that
ends up in opencode.json or in a request takes OpenCode's ``{file:...}`` or ``{env:...}``
substitutions (OpenCode would expand them: a file of its server in a request, a broken
config for every new project)."""

from __future__ import annotations

import pytest

from doce.inputs import config_substitution_message
from providers import services
from providers.models import ProviderConnection
from tests.providers.conftest import new_key
from tests.providers.views.test_provider_options import option_catalog  # noqa: F401

pytestmark = pytest.mark.django_db
CUSTOM = "/settings/providers/custom/"
SUBSTITUTIONS = ["{file:/etc/hostname}", "{env:HOME}", "{FILE:/etc/passwd}", "x{env:A}y"]


@pytest.fixture
def staff_alice(alice):
    alice.is_staff = True  # loopback endpoints are for administrators
    alice.save(update_fields=["is_staff"])
    return alice


def custom_form(**overrides) -> dict:
    data = {
        "provider_id": "my-gateway",
        "name": "Gateway",
        "base_url": "http://127.0.0.1:1/v1",
        "models": "model-1",
        "api_key": "",
        "headers": "",
    }
    data.update(overrides)
    return data


def refused(response, field: str) -> str:
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert field in errors, errors
    text = " ".join(errors[field])
    assert "cannot contain “{env:” or “{file:”" in text, text
    assert not ProviderConnection.objects.filter(provider_id="my-gateway").exists()
    return text


@pytest.mark.parametrize("value", SUBSTITUTIONS)
def test_a_base_url(staff_alice, alice_client, value):
    for base_url in (f"http://127.0.0.1:1/v1/{value}", f"http://127.0.0.1:1/{value}/v1"):
        response = alice_client.post(CUSTOM, custom_form(base_url=base_url))
        assert "A base URL cannot contain" in refused(response, "base_url")


@pytest.mark.parametrize("value", SUBSTITUTIONS)
def test_a_header_name_and_a_header_value(staff_alice, alice_client, value):
    response = alice_client.post(CUSTOM, custom_form(headers=f"X-Org: {value}"))
    assert "Line 1: A header cannot contain" in refused(response, "headers")
    response = alice_client.post(CUSTOM, custom_form(headers=f"X-{value}: 1"))
    refused(response, "headers")


@pytest.mark.parametrize("value", SUBSTITUTIONS)
def test_a_key_in_the_endpoint_form(staff_alice, alice_client, value):
    response = alice_client.post(CUSTOM, custom_form(api_key=f"sk-{value}".replace(" ", "")))
    assert "A key cannot contain" in refused(response, "api_key")


def test_a_name_and_a_model_id(staff_alice, alice_client):
    refused(alice_client.post(CUSTOM, custom_form(name="Gw {env:HOME}")), "name")
    response = alice_client.post(CUSTOM, custom_form(models="{file:/etc/passwd}"))
    assert response.status_code == 200 and "models" in response.context["form"].errors


@pytest.mark.parametrize("value", SUBSTITUTIONS)
def test_a_key_in_the_api_key_form(alice, alice_client, catalog, value):
    response = alice_client.post(
        "/settings/providers/openrouter/api-key/", {"api_key": f"sk-or-{value}"}
    )
    assert response.status_code == 200
    assert "cannot contain “{env:”" in " ".join(response.context["form"].errors["api_key"])
    assert not ProviderConnection.objects.exists()


def test_a_prompt_input(alice, alice_client, catalog):
    response = alice_client.post(
        "/settings/providers/cloudflare-workers-ai/api-key/",
        {"api_key": new_key(), "accountId": "{env:CLOUDFLARE_ACCOUNT_ID}"},
    )
    assert response.status_code == 200
    assert "cannot contain “{env:”" in " ".join(response.context["form"].errors["accountId"])
    assert not ProviderConnection.objects.exists()


@pytest.mark.parametrize(
    ("provider_id", "field", "value", "others"),
    [
        ("azure", "resourceName", "{env:AZURE}", {"api_key": "az-key-1234567890"}),
        ("amazon-bedrock", "region", "{env:AWS_REGION}", {"api_key": "br-key-1234567890"}),
        (
            "amazon-bedrock",
            "accessKeyId",
            "{file:/root/.aws/credentials}",
            {"secretAccessKey": "a" * 40},
        ),
        ("google-vertex", "project", "{env:PROJECT}", {}),
        (
            "google-vertex",
            "serviceAccount",
            '{"type": "{file:/etc/passwd}"}',
            {"project": "p-12345"},
        ),
    ],
)
def test_an_option_value(alice, alice_client, option_catalog, provider_id, field, value, others):  # noqa: F811
    response = alice_client.post(
        f"/settings/providers/{provider_id}/api-key/", {**others, field: value}
    )
    assert response.status_code == 200
    errors = response.context["form"].errors
    assert "cannot contain “{env:”" in " ".join(errors.get(field, [])), errors
    assert not ProviderConnection.objects.exists()


def test_the_services_refuse_them_for_every_other_writer(alice):
    with pytest.raises(services.ValidationError) as caught:
        services.connection_create(
            user=alice,
            provider_id="my-gateway",
            name="Gateway",
            base_url="http://127.0.0.1:1/v1/{file:/etc/hostname}",
            models=["m"],
            api_key="sk-{env:HOME}",
        )
    assert set(caught.value.message_dict) >= {"base_url", "api_key"}
    assert caught.value.message_dict["base_url"] == [config_substitution_message("A base URL")]
