"""A custom endpoint's row says what was entered: its base URL, how many models, and
"no key" when none was given; the admin's list shows name and base URL too."""

import pytest

from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db


def test_a_keyless_endpoint_says_no_key(alice_client, alice):
    ProviderConnectionFactory(
        user=alice,
        provider_id="ollama-box",
        name="Ollama",
        base_url="http://127.0.0.1:11434/v1",
        models=["llama3", "qwen"],
        api_key="",
        key_hint="",
    )
    html = alice_client.get("/settings/providers/").content.decode()
    row = html[html.index('data-provider-id="ollama-box"') :]
    row = row[: row.index("</li>")]
    assert "data-no-key" in row and "API key" not in row
    assert "http://127.0.0.1:11434/v1" in row
    assert "2 models" in row


def test_an_endpoint_with_a_key_shows_its_hint(alice_client, alice):
    connection = ProviderConnectionFactory(
        user=alice,
        provider_id="gateway",
        name="Gateway",
        base_url="https://gw.example.test/v1",
        models=["m"],
    )
    html = alice_client.get("/settings/providers/").content.decode()
    row = html[html.index('data-provider-id="gateway"') :]
    row = row[: row.index("</li>")]
    assert "data-no-key" not in row and connection.key_hint in row and "1 model" in row


def test_the_empty_list_mentions_free_models(alice_client, settings):
    settings.DOCE_FREE_MODELS = True
    html = alice_client.get("/settings/providers/").content.decode()
    assert "start building sites" not in html
    assert "free models" in html
    settings.DOCE_FREE_MODELS = False
    assert "free models" not in alice_client.get("/settings/providers/").content.decode()


def test_the_admin_list_has_name_and_base_url(client, admin_user, alice):
    ProviderConnectionFactory(
        user=alice, provider_id="gateway", name="Gateway", base_url="https://gw.example.test/v1"
    )
    client.force_login(admin_user)
    html = client.get("/admin/providers/providerconnection/").content.decode()
    assert "https://gw.example.test/v1" in html and "column-base_url" in html
    assert "column-name" in html
