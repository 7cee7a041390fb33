"""A custom endpoint's models: discovered from its /models when the form's list is left
empty (the list stays editable), and "Re-scan models" reads them again."""

from __future__ import annotations

import json

import pytest

from bench.stub_llm import StubLLM
from providers import services, validation
from providers.models import AuditEvent, ProviderConnection
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
URL = "/settings/providers/custom/"


def form(**overrides) -> dict:
    data = {"provider_id": "my-llm", "name": "My LLM", "models": "", "api_key": ""}
    data.update(overrides)
    return data


def rescan_url(provider_id: str = "my-llm") -> str:
    return f"/settings/providers/custom/{provider_id}/rescan/"


# --- discovery on save --------------------------------------------------------------------
def test_a_keyless_endpoint_left_without_models_gets_those_of_its_models_route(alice, alice_client):
    with StubLLM(model="tiny-coder") as llm:
        response = alice_client.post(URL, form(base_url=llm.base_url))
        seen = [(r.method, r.path, r.authorization) for r in llm.requests]
    assert response.status_code == 302
    connection = ProviderConnection.objects.get(user=alice, provider_id="my-llm")
    assert connection.models == ["tiny-coder"]
    assert seen == [("GET", "/v1/models", None)]  # no key: no Authorization header


def test_the_list_is_cleaned_and_the_key_sent(alice, alice_client, provider_api):
    provider_api.answer(
        200,
        {
            "object": "list",
            "data": [
                {"id": "llama3.1:8b"},
                {"id": " qwen3-coder "},
                {"id": "llama3.1:8b"},  # a repeat
                {"id": "has space"},
                {"id": "x" * 256},  # longer than a model id may be
                {"id": "line\nbreak"},
                {"id": "m-{env:OPENCODE_SERVER_PASSWORD}"},  # OpenCode would expand it
                {"id": 7},
                {"name": "no id"},
                "not an object",
            ],
        },
    )
    key = new_key("sk-")
    alice_client.post(URL, form(base_url=provider_api.url + "/v1", api_key=key))
    connection = ProviderConnection.objects.get(provider_id="my-llm")
    assert connection.models == ["llama3.1:8b", "qwen3-coder"]
    assert provider_api.seen[0].headers["authorization"] == f"Bearer {key}"
    assert connection.last_validated_at is not None  # the same request checked the key


def test_models_typed_in_win_and_no_list_is_read(alice, alice_client, provider_api):
    provider_api.answer(200, {"data": [{"id": "from-the-endpoint"}]})
    alice_client.post(
        URL, form(base_url=provider_api.url + "/v1", models="mine", api_key=new_key("sk-"))
    )
    assert ProviderConnection.objects.get(provider_id="my-llm").models == ["mine"]


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (200, "not json", "The endpoint listed no model ids"),
        (200, {"data": []}, "The endpoint listed no model ids"),
        (200, {"models": [{"name": "ollama-native"}]}, "The endpoint listed no model ids"),
        (404, {}, "The endpoint answered 404 (Not Found)"),
        (401, {}, "The endpoint asks for a key"),
    ],
)
def test_no_list_and_no_models_is_a_clear_error(alice_client, provider_api, status, body, reason):
    provider_api.answer(status, body)
    response = alice_client.post(URL, form(base_url=provider_api.url + "/v1"))
    html = response.content.decode()
    assert response.status_code == 200
    assert "Enter at least one model id: the endpoint did not list its models" in html
    assert reason in html
    assert not ProviderConnection.objects.exists()


def test_without_checks_no_endpoint_is_asked(alice_client, provider_api, settings):
    settings.DOCE_PROVIDER_CHECK_KEYS = False
    response = alice_client.post(URL, form(base_url=provider_api.url + "/v1"))
    assert "Enter at least one model id." in response.content.decode()
    assert provider_api.seen == []


def test_emptying_the_list_on_edit_reads_it_again_with_the_stored_key(
    alice, alice_client, provider_api
):
    key = new_key("sk-")
    services.connection_create(
        user=alice,
        provider_id="my-llm",
        name="My LLM",
        base_url=provider_api.url + "/v1",
        models=["old"],
        api_key=key,
    )
    provider_api.answer(200, {"data": [{"id": "new-1"}, {"id": "new-2"}]})
    response = alice_client.post(
        URL + "my-llm/edit/", form(base_url=provider_api.url + "/v1", models="")
    )
    assert response.status_code == 302
    assert ProviderConnection.objects.get(provider_id="my-llm").models == ["new-1", "new-2"]
    assert provider_api.seen[-1].headers["authorization"] == f"Bearer {key}"


def test_at_most_500_models_are_taken():
    body = json.dumps({"data": [{"id": f"m{i}"} for i in range(700)]}).encode()
    models = validation.models_from_body(body)
    assert len(models) == validation.MAX_MODELS and models[-1] == "m499"
    assert validation.models_from_body(b"\xff\xfe") == ()
    assert validation.models_from_body(b'{"data": {"id": "x"}}') == ()


# --- re-scan ------------------------------------------------------------------------------
@pytest.fixture
def endpoint(alice, provider_api):
    return services.connection_create(
        user=alice,
        provider_id="my-llm",
        name="My LLM",
        base_url=provider_api.url + "/v1",
        models=["old"],
        api_key=new_key("sk-"),
    )


def test_the_edit_page_has_the_rescan_button(alice_client, endpoint):
    html = alice_client.get(URL + "my-llm/edit/").content.decode()
    assert f'action="{rescan_url()}"' in html and "Re-scan models" in html


def test_rescan_replaces_the_list_and_audits_it(alice_client, endpoint, provider_api):
    provider_api.answer(200, {"data": [{"id": "new-1"}, {"id": "new-2"}]})
    response = alice_client.post(rescan_url(), follow=True)
    endpoint.refresh_from_db()
    assert endpoint.models == ["new-1", "new-2"]
    assert "My LLM: 2 models found at /models." in response.content.decode()
    event = AuditEvent.objects.filter(connection=endpoint, action="updated").get()
    assert event.detail == {"fields": ["models"]}
    response = alice_client.post(rescan_url(), follow=True)
    assert "the endpoint lists the same 2 models" in response.content.decode()
    assert AuditEvent.objects.filter(connection=endpoint, action="updated").count() == 1


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (500, {"error": "boom"}, "The endpoint answered 500 (Internal Server Error)"),
        (200, {"data": []}, "The endpoint listed no model ids"),
    ],
)
def test_a_failed_rescan_keeps_the_list(alice_client, endpoint, provider_api, status, body, reason):
    provider_api.answer(status, body)
    html = alice_client.post(rescan_url(), follow=True).content.decode()
    endpoint.refresh_from_db()
    assert endpoint.models == ["old"]
    assert f"My LLM: the endpoint did not list its models ({reason})." in html
    assert "boom" not in html


def test_a_rescan_the_endpoint_refuses_marks_the_key_rejected(alice_client, endpoint, provider_api):
    provider_api.reject()
    alice_client.post(rescan_url())
    endpoint.refresh_from_db()
    assert endpoint.models == ["old"] and endpoint.status == "error"
    assert endpoint.error_message == "The endpoint rejected the key (401)"


def test_rescan_is_post_only_and_for_your_own_custom_endpoints(
    alice, bob, alice_client, client, endpoint, provider_api
):
    assert alice_client.get(rescan_url()).status_code == 405
    services.connection_create(user=alice, provider_id="openai", api_key=new_key())
    assert alice_client.post(rescan_url("openai")).status_code == 404
    assert alice_client.post(rescan_url("nothing")).status_code == 404
    client.force_login(bob)
    assert client.post(rescan_url()).status_code == 404
    assert provider_api.seen == []
