"""Fixtures for the provider settings pages: provider APIs on loopback, a catalog with
prompts, keys to grep for."""

from __future__ import annotations

import secrets

import pytest
from django.core.cache import cache

from providers.catalog import catalog_store
from tests.providers_ui.stubs import ProviderAPI

CLOSED_PORT_URL = "http://127.0.0.1:9"  # nothing listens: a check is "unreachable"
PROVIDERS_CHECKED = ("openrouter", "anthropic", "openai", "google", "groq")


def new_key(prefix: str = "sk-or-v1-") -> str:
    """A random key, long enough that finding it in a page means a leak."""
    return prefix + secrets.token_hex(24)


@pytest.fixture(autouse=True)
def _isolated(settings):
    """No test reaches a real provider; rate-limit counters start at zero."""
    settings.DOCE_PROVIDER_API_URLS = dict.fromkeys(PROVIDERS_CHECKED, CLOSED_PORT_URL)
    settings.DOCE_PROVIDER_CHECK_TIMEOUT = 2.0
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def provider_api(settings):
    """Every known provider's API, answered by one local stub."""
    with ProviderAPI() as api:
        settings.DOCE_PROVIDER_API_URLS = dict.fromkeys(PROVIDERS_CHECKED, api.url)
        yield api


CATALOG = [
    {"id": "openrouter", "name": "OpenRouter", "env": ["OPENROUTER_API_KEY"],
     "default_model": "anthropic/claude-sonnet-4.6", "auth_methods": [],
     "models": [["anthropic/claude-sonnet-4.6", "Claude Sonnet 4.6"],
                ["openai/gpt-5.5", "GPT-5.5"]]},
    {"id": "anthropic", "name": "Anthropic", "env": ["ANTHROPIC_API_KEY"], "default_model": "",
     "auth_methods": [], "models": [["claude-sonnet-4-6", "Claude Sonnet 4.6"]]},
    {"id": "cloudflare-workers-ai", "name": "Cloudflare Workers AI", "env": [],
     "default_model": "", "models": [["llama-4", "Llama 4"]],
     "auth_methods": [{"type": "api", "label": "API key", "prompts": [
         {"type": "text", "key": "accountId", "message": "Enter your Cloudflare Account ID",
          "placeholder": "e.g. 1234"}]}]},
    {"id": "github-copilot", "name": "GitHub Copilot", "env": ["GITHUB_TOKEN"],
     "default_model": "", "models": [["gpt-5.5", "GPT-5.5"]],
     "auth_methods": [{"type": "oauth", "label": "Login with GitHub Copilot", "prompts": [
         {"type": "select", "key": "deploymentType", "message": "Select GitHub deployment type",
          "options": [{"value": "github.com", "label": "GitHub.com"},
                      {"value": "enterprise", "label": "GitHub Enterprise"}]},
         {"type": "text", "key": "enterpriseUrl", "message": "Enterprise URL",
          "when": {"key": "deploymentType", "op": "eq", "value": "enterprise"}}]}]},
    {"id": "openai", "name": "OpenAI", "env": ["OPENAI_API_KEY"], "default_model": "gpt-5.5",
     "models": [["gpt-5.5", "GPT-5.5"]],
     "auth_methods": [{"type": "oauth", "label": "ChatGPT Pro/Plus (browser)", "prompts": []},
                      {"type": "api", "label": "Manually enter API Key", "prompts": []}]},
    {"id": "deepseek", "name": "DeepSeek", "env": ["DEEPSEEK_API_KEY"], "default_model": "",
     "auth_methods": [], "models": [["deepseek-chat", "DeepSeek Chat"]]},
]  # fmt: skip


@pytest.fixture
def catalog(db):
    """A small stored catalog (as if fetched from OpenCode), with prompts."""
    catalog_store(CATALOG, opencode_version="1.18.33")
    return CATALOG
