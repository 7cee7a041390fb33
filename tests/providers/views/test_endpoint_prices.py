"""A custom endpoint may declare its price (US dollars per million tokens): stored with
the endpoint, written into its models' ``cost`` in opencode.json so OpenCode reports
what a reply cost; without one, usage counts tokens and says "no price"."""

from __future__ import annotations

import pytest

from doce.opencode.runtimes import CustomProvider
from projects import services as project_services
from projects.models import Project
from providers.models import ProviderConnection

pytestmark = pytest.mark.django_db
URL = "/settings/providers/custom/"


def form(**overrides) -> dict:
    return {
        "provider_id": "mine",
        "name": "Mine",
        "base_url": "http://127.0.0.1:1/v1",
        "models": "m1\nm2",
        "api_key": "",
        **overrides,
    }


def test_a_price_is_stored_and_shown_again_on_edit(alice_client):
    response = alice_client.post(URL, form(price_input="3", price_output="15.5"))
    assert response.status_code == 302
    assert ProviderConnection.objects.get().prices == {"input": "3", "output": "15.5"}
    page = alice_client.get("/settings/providers/custom/mine/edit/").content.decode()
    assert 'value="3"' in page and 'value="15.5"' in page


def test_one_price_alone_counts_the_other_as_free(alice_client):
    assert alice_client.post(URL, form(price_output="2")).status_code == 302
    assert ProviderConnection.objects.get().prices == {"input": "0", "output": "2"}


def test_no_price_stores_none(alice_client):
    assert alice_client.post(URL, form()).status_code == 302
    assert ProviderConnection.objects.get().prices == {}


@pytest.mark.parametrize("value", ["-1", "abc", "1e9", "0.000001", "NaN"])
def test_a_bad_price_is_a_clear_error(alice_client, value):
    response = alice_client.post(URL, form(price_input=value))
    assert response.status_code == 200
    assert response.context["form"].errors["price_input"]
    assert not ProviderConnection.objects.exists()


def test_the_price_becomes_every_models_cost_in_opencode_json():
    config = CustomProvider(
        "mine", "Mine", "http://h/v1", ["m1", "m2"], cost={"input": 3.0, "output": 15.0}
    )
    models = config.to_config()["models"]
    assert models["m1"]["cost"] == {"input": 3.0, "output": 15.0} == models["m2"]["cost"]
    assert "cost" not in CustomProvider("x", "X", "http://h/v1", ["m1"]).to_config()["models"]["m1"]


def test_the_projects_spec_carries_the_endpoints_price(alice, alice_client):
    alice_client.post(URL, form(price_input="3", price_output="15"))
    project = Project.objects.create(
        owner=alice,
        name="Site",
        prompt="Build",
        current_model_provider_id="mine",
        current_model_id="m1",
        server_password="pw-" + "x" * 30,
    )
    (provider,) = project_services.project_spec(project).custom_providers
    assert provider.cost == {"input": 3.0, "output": 15.0}
