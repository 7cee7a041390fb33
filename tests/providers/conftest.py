"""Helpers for the credential store tests: keys, raw column reads, raw database bytes."""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from doce import keyring
from providers import oauth
from providers.catalog import catalog_store
from tests.providers.stubs import ProviderAPI
from tests.providers.views.fake_runtime import FakeRuntime

#: The key tests/settings.py configures; everything a test creates is encrypted with it.
TEST_KEY = django_settings.DOCE_ENCRYPTION_KEYS[0]
NEW_KEY = keyring.generate_key()
WRONG_KEY = keyring.generate_key()


@pytest.fixture
def use_keys(settings):
    """``use_keys(first, *others)`` sets DOCE_ENCRYPTION_KEYS for the rest of the test."""

    def use(*keys: str) -> None:
        settings.DOCE_ENCRYPTION_KEYS = list(keys)

    return use


def raw_value(table: str, column: str, pk_column: str, pk) -> str | None:
    """A column's stored value, read with SQL (no model field in between)."""
    with connection.cursor() as cursor:
        quote = connection.ops.quote_name
        cursor.execute(
            f"SELECT {quote(column)} FROM {quote(table)} WHERE {quote(pk_column)} = %s", [pk]
        )
        return cursor.fetchone()[0]


def raw_connection_value(connection_pk: int, column: str) -> str | None:
    return raw_value("provider_connections", column, "id", connection_pk)


def raw_legacy_value(user_pk: int) -> str | None:
    return raw_value("user_settings", "openrouter_api_key", "user_id", user_pk)


def database_bytes() -> bytes:
    """Everything the database holds at rest: the SQLite file and its write-ahead log, or
    a pg_dump of the PostgreSQL test database. Needs committed data (transactional_db)."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        path = Path(params["NAME"])
        return b"".join(
            Path(f"{path}{suffix}").read_bytes()
            for suffix in ("", "-wal", "-journal")
            if Path(f"{path}{suffix}").exists()
        )
    assert connection.vendor == "postgresql", connection.vendor
    env = dict(os.environ, PGPASSWORD=params.get("PASSWORD") or "")
    return subprocess.run(
        [
            "pg_dump",
            "--no-owner",
            "-h",
            params.get("HOST") or "127.0.0.1",
            "-p",
            str(params.get("PORT") or 5432),
            "-U",
            params.get("USER") or "postgres",
            params["NAME"],
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout


# --- the migration chain ----------------------------------------------------------------
@pytest.fixture
def migrator(transactional_db):
    """``migrate(targets)`` moves the test database; the chain is restored afterwards."""
    executor = MigrationExecutor(connection)

    def migrate(targets):
        executor.loader.build_graph()
        executor.migrate(targets)
        executor.loader.build_graph()
        return executor.loader.project_state(targets).apps

    yield migrate
    migrate(executor.loader.graph.leaf_nodes())


def latest() -> list[tuple[str, str]]:
    executor = MigrationExecutor(connection)
    return [node for node in executor.loader.graph.leaf_nodes() if node[0] == "providers"]


# --- the settings pages: provider APIs on loopback, a catalog with prompts -------------
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
    {
        "id": "openrouter",
        "name": "OpenRouter",
        "env": ["OPENROUTER_API_KEY"],
        "default_model": "anthropic/claude-sonnet-4.6",
        "auth_methods": [],
        "models": [
            ["anthropic/claude-sonnet-4.6", "Claude Sonnet 4.6"],
            ["openai/gpt-5.5", "GPT-5.5"],
        ],
    },
    {
        "id": "anthropic",
        "name": "Anthropic",
        "env": ["ANTHROPIC_API_KEY"],
        "default_model": "",
        "auth_methods": [],
        "models": [["claude-sonnet-4-6", "Claude Sonnet 4.6"]],
    },
    {
        "id": "cloudflare-workers-ai",
        "name": "Cloudflare Workers AI",
        "env": [],
        "default_model": "",
        "models": [["llama-4", "Llama 4"]],
        "auth_methods": [
            {
                "type": "api",
                "label": "API key",
                "prompts": [
                    {
                        "type": "text",
                        "key": "accountId",
                        "message": "Enter your Cloudflare Account ID",
                        "placeholder": "e.g. 1234",
                    }
                ],
            }
        ],
    },
    {
        "id": "github-copilot",
        "name": "GitHub Copilot",
        "env": ["GITHUB_TOKEN"],
        "default_model": "",
        "models": [["gpt-5.5", "GPT-5.5"]],
        "auth_methods": [
            {
                "type": "oauth",
                "label": "Login with GitHub Copilot",
                "prompts": [
                    {
                        "type": "select",
                        "key": "deploymentType",
                        "message": "Select GitHub deployment type",
                        "options": [
                            {"value": "github.com", "label": "GitHub.com"},
                            {"value": "enterprise", "label": "GitHub Enterprise"},
                        ],
                    },
                    {
                        "type": "text",
                        "key": "enterpriseUrl",
                        "message": "Enterprise URL",
                        "when": {"key": "deploymentType", "op": "eq", "value": "enterprise"},
                    },
                ],
            }
        ],
    },
    {
        "id": "openai",
        "name": "OpenAI",
        "env": ["OPENAI_API_KEY"],
        "default_model": "gpt-5.5",
        "models": [["gpt-5.5", "GPT-5.5"]],
        "auth_methods": [
            {"type": "oauth", "label": "ChatGPT Pro/Plus (browser)", "prompts": []},
            {"type": "api", "label": "Manually enter API Key", "prompts": []},
        ],
    },
    {
        "id": "deepseek",
        "name": "DeepSeek",
        "env": ["DEEPSEEK_API_KEY"],
        "default_model": "",
        "auth_methods": [],
        "models": [["deepseek-chat", "DeepSeek Chat"]],
    },
]


@pytest.fixture
def catalog(db):
    """A small stored catalog (as if fetched from OpenCode), with prompts."""
    catalog_store(CATALOG, opencode_version="1.18.33")
    return CATALOG


def admin_add_form(user, **overrides) -> dict:
    """The admin's "add provider connection" form for ``user``: an API-key connection to
    groq, with ``overrides`` (e.g. ``new_api_key``)."""
    return {
        "user": user.pk,
        "provider_id": "groq",
        "auth_type": "api",
        "status": "connected",
        "error_message": "",
        "name": "",
        "base_url": "",
        "models": "[]",
        "metadata": "{}",
        "oauth_expires_at_0": "",
        "oauth_expires_at_1": "",
        "oauth_account_id": "",
        "oauth_enterprise_url": "",
        **overrides,
    }


@pytest.fixture
def runtime(monkeypatch, settings, tmp_path):
    """OAuth sign-ins start their servers on a stand-in runtime (no OpenCode binary);
    DOCE_DATA_DIR is the test's own folder."""
    settings.DOCE_DATA_DIR = tmp_path
    fake = FakeRuntime()
    monkeypatch.setattr(oauth, "_runtime", lambda: fake)
    return fake


# OpenCode's answers to GET /provider and GET /provider/auth, for the catalog's tests.
PROVIDERS = {
    "all": [
        {
            "id": "zeta-ai",
            "name": "Zeta AI",
            "env": ["ZETA_KEY"],
            "source": "custom",
            "options": {"apiKey": "public"},
            "models": {
                "z-old": {
                    "id": "z-old",
                    "name": "Z Old",
                    "status": "deprecated",
                    "release_date": "2023-01-01",
                    "capabilities": {"toolcall": True},
                },
                "z-1": {
                    "id": "z-1",
                    "name": "Z One",
                    "release_date": "2024-01-01",
                    "capabilities": {"toolcall": True},
                    "cost": {"input": 1},
                },
                "z-2": {
                    "id": "z-2",
                    "name": "Z Two",
                    "release_date": "2025-01-01",
                    "capabilities": {"toolcall": True},
                },
                "z-embed": {
                    "id": "z-embed",
                    "name": "Z Embed",
                    "release_date": "2025-02-01",
                    "capabilities": {"toolcall": False},
                },
            },
        },
        {
            "id": "anthropic",
            "name": "Anthropic",
            "env": ["ANTHROPIC_API_KEY"],
            "models": {
                "claude-sonnet-4-6": {"name": "Claude Sonnet 4.6", "release_date": "2026-02-17"}
            },
        },
        {"id": "alpha", "name": "Alpha", "env": [], "models": {}},
        {"id": "Bad Id!", "name": "Broken", "models": {}},
        {"id": "github-copilot", "name": "GitHub Copilot", "env": ["GITHUB_TOKEN"], "models": {}},
    ],
    "default": {"zeta-ai": "z-embed", "anthropic": "claude-sonnet-4-6"},
    "connected": ["opencode"],
}
METHODS = {
    "github-copilot": [
        {
            "type": "oauth",
            "label": "Login with GitHub Copilot",
            "prompts": [
                {
                    "type": "select",
                    "key": "deploymentType",
                    "message": "Deployment",
                    "options": [{"label": "GitHub.com", "value": "github.com", "hint": "Public"}],
                },
                {
                    "type": "text",
                    "key": "enterpriseUrl",
                    "message": "URL",
                    "placeholder": "x",
                    "when": {"key": "deploymentType", "op": "eq", "value": "enterprise"},
                },
            ],
        }
    ],
    "plugin-only": [{"type": "oauth", "label": "Test login"}, {"type": "api", "label": "Key"}],
    "weird": [
        {"type": "oauth", "label": "Odd", "prompts": [{"type": "confirm", "key": "x"}]},
        {"type": "api", "label": "Key"},
    ],
}
