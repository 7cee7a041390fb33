"""+ Add provider: the picker (search, popular first) and the auth-method step."""

from __future__ import annotations

import re

import pytest

from providers import services
from tests.providers.conftest import new_key

pytestmark = pytest.mark.django_db
URL = "/settings/providers/add/"


def listed(html: str) -> list[str]:
    return re.findall(r'data-catalog-id="([^"]+)"', html)


def test_popular_first_and_a_custom_endpoint_on_top(alice_client, catalog):
    html = alice_client.get(URL).content.decode()
    assert listed(html) == [
        "openrouter",
        "anthropic",
        "openai",
        "github-copilot",
        "deepseek",
        "cloudflare-workers-ai",
    ]
    assert html.index("Custom OpenAI-compatible endpoint") < html.index("data-catalog-id=")
    assert "6 providers, from OpenCode 1.18.33." in html


def test_search_works_without_javascript_and_with_htmx(alice_client, catalog):
    html = alice_client.get(URL, {"q": "cloud"}).content.decode()
    assert listed(html) == ["cloudflare-workers-ai"] and "<html" in html
    fragment = alice_client.get(URL, {"q": "nothing"}, headers={"HX-Request": "true"})
    text = fragment.content.decode()
    assert "<html" not in text and 'id="picker-results"' in text
    assert "No provider matches “nothing”" in text


def test_connected_providers_are_marked(alice, alice_client, catalog):
    services.connection_create(user=alice, provider_id="deepseek", api_key=new_key())
    html = alice_client.get(URL, {"q": "deepseek"}).content.decode()
    assert "Connected" in html


def test_methods_link_to_the_api_key_form_and_the_sign_in(alice_client, catalog):
    html = alice_client.get("/settings/providers/openai/").content.decode()
    assert 'href="/settings/providers/openai/oauth/?method=0"' in html
    assert 'href="/settings/providers/openai/api-key/"' in html
    assert "ChatGPT Pro/Plus (browser)" in html and "Manually enter API Key" in html
    copilot = alice_client.get("/settings/providers/github-copilot/").content.decode()
    assert "/api-key/" not in copilot and "oauth/?method=0" in copilot


def test_unknown_provider_answers_404(alice_client, catalog):
    assert alice_client.get("/settings/providers/not-a-provider/").status_code == 404
