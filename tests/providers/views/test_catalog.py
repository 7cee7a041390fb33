"""The provider catalog: trimmed from OpenCode's answers, stored, read; the fallback."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from providers import tasks
from providers.catalog import (
    catalog_entries,
    catalog_entry,
    catalog_ids,
    catalog_is_stale,
    catalog_models,
    catalog_names,
    catalog_status,
    catalog_store,
)
from providers.catalog import fetch as catalog_fetch_module
from providers.catalog.fetch import CatalogUnavailable, trim_catalog
from providers.models import CatalogProvider
from tests.providers.conftest import METHODS, PROVIDERS

pytestmark = pytest.mark.django_db


def test_trim_keeps_what_doce_needs():
    entries = {e["id"]: e for e in trim_catalog(PROVIDERS, METHODS)}
    assert set(entries) == {
        "zeta-ai",
        "anthropic",
        "alpha",
        "github-copilot",
        "plugin-only",
        "weird",
    }
    zeta = entries["zeta-ai"]
    assert zeta == {
        "id": "zeta-ai",
        "name": "Zeta AI",
        "env": ["ZETA_KEY"],
        "default_model": "z-2",  # OpenCode's default was not an agent model
        "auth_methods": [],
        # Newest first; no embeddings, nothing deprecated; the price and context size
        # where OpenCode knows them.
        "models": [["z-2", "Z Two"], ["z-1", "Z One", {"input": 1}]],
        "free_models": [],  # only OpenCode Zen's free models need no key
    }
    copilot = entries["github-copilot"]["auth_methods"]
    assert copilot[0]["type"] == "oauth" and [p["key"] for p in copilot[0]["prompts"]] == [
        "deploymentType",
        "enterpriseUrl",
    ]
    assert copilot[0]["prompts"][0]["options"] == [{"value": "github.com", "label": "GitHub.com"}]
    assert entries["plugin-only"]["name"] == "plugin-only"
    # A method with a prompt doce cannot show stays in place (indexes!) but is unusable.
    assert [m["type"] for m in entries["weird"]["auth_methods"]] == ["unsupported", "api"]


def test_store_orders_popular_first_then_by_name():
    catalog_store(trim_catalog(PROVIDERS, METHODS), opencode_version="1.18.33")
    ids = [entry.id for entry in catalog_entries()]
    assert ids == ["anthropic", "github-copilot", "alpha", "plugin-only", "weird", "zeta-ai"]
    status = catalog_status()
    assert status.providers == 6 and status.opencode_version == "1.18.33"
    assert not status.is_fallback


def test_entries_methods_and_prompts():
    catalog_store(trim_catalog(PROVIDERS, METHODS))
    copilot = catalog_entry("github-copilot")
    assert copilot.api_method is None
    [method] = copilot.oauth_methods
    assert method.index == 0 and method.label == "Login with GitHub Copilot"
    select, url = method.prompts
    assert select.options == (("github.com", "GitHub.com"),)
    assert url.applies({"deploymentType": "enterprise"}) and not url.applies(
        {"deploymentType": "github.com"}
    )
    anthropic = catalog_entry("anthropic")
    assert anthropic.api_method.index is None and anthropic.oauth_methods == ()
    assert anthropic.models == (("claude-sonnet-4-6", "Claude Sonnet 4.6"),)
    plugin = catalog_entry("plugin-only")
    assert plugin.oauth_method(0).label == "Test login" and plugin.api_method.index == 1
    assert plugin.oauth_method(1) is None
    assert catalog_entry("weird").oauth_methods == ()
    assert catalog_entry("openrouter") is None  # a stored catalog replaces the fallback


def test_search_by_name_or_id():
    catalog_store(trim_catalog(PROVIDERS, METHODS))
    assert [e.id for e in catalog_entries(query="ZETA")] == ["zeta-ai"]
    assert [e.id for e in catalog_entries(query="copilot")] == ["github-copilot"]
    assert catalog_entries(query="nothing-like-this") == []


def test_the_fallback_before_any_fetch():
    assert not CatalogProvider.objects.exists()
    ids = [e.id for e in catalog_entries()]
    assert ids == [
        *("openrouter", "anthropic", "openai", "google", "github-copilot", "groq"),
        "opencode",
    ]
    assert catalog_status().is_fallback
    assert catalog_entry("github-copilot").oauth_methods[0].prompts[1].key == "enterpriseUrl"
    openai = catalog_entry("openai")
    assert [m.index for m in openai.oauth_methods] == [0, 1] and openai.api_method.index == 2
    assert [e.id for e in catalog_entries(query="goo")] == ["google"]
    assert catalog_is_stale(max_age=timedelta(hours=24))


def test_names_models_and_ids_in_one_query_each(django_assert_num_queries):
    catalog_store(trim_catalog(PROVIDERS, METHODS))
    with django_assert_num_queries(1):
        assert catalog_names(["zeta-ai", "openrouter", "nope"]) == {
            "zeta-ai": "Zeta AI",
            "openrouter": "OpenRouter",
        }
    with django_assert_num_queries(1):
        models = catalog_models(["zeta-ai"])
    assert models == {"zeta-ai": [("z-2", "Z Two"), ("z-1", "Z One")]}
    with django_assert_num_queries(1):
        ids = catalog_ids()
    assert {"zeta-ai", "openrouter", "github-copilot"} <= ids  # the fallback's ids always


def test_staleness():
    catalog_store(trim_catalog(PROVIDERS, METHODS))
    assert not catalog_is_stale(max_age=timedelta(hours=1))
    assert catalog_is_stale(max_age=timedelta(hours=1), now=timezone.now() + timedelta(hours=2))


def test_the_command_refreshes_and_reports(monkeypatch):
    monkeypatch.setattr(
        catalog_fetch_module, "catalog_fetch", lambda: (trim_catalog(PROVIDERS, METHODS), "9.9.9")
    )
    out = StringIO()
    call_command("refresh_provider_catalog", stdout=out)
    assert "Stored 6 providers." in out.getvalue() and "OpenCode 9.9.9" in out.getvalue()
    status = StringIO()
    call_command("refresh_provider_catalog", "--status", stdout=status)
    assert "6 providers from OpenCode 9.9.9" in status.getvalue()


def test_the_command_fails_clearly_and_keeps_the_old_catalog(monkeypatch):
    catalog_store(trim_catalog(PROVIDERS, METHODS))

    def fail():
        raise CatalogUnavailable("could not read the catalog from OpenCode: binary missing")

    monkeypatch.setattr(catalog_fetch_module, "catalog_fetch", fail)
    with pytest.raises(CommandError, match="binary missing"):
        call_command("refresh_provider_catalog", stdout=StringIO())
    assert CatalogProvider.objects.count() == 6


def test_the_periodic_task_refreshes_only_a_stale_catalog(monkeypatch, settings):
    calls = []
    monkeypatch.setattr(
        catalog_fetch_module,
        "catalog_fetch",
        lambda: calls.append(1) or (trim_catalog(PROVIDERS, METHODS), "1"),
    )
    assert tasks.refresh_catalog() == 6  # never fetched
    assert tasks.refresh_catalog() == 0 and len(calls) == 1  # fresh
    assert tasks.refresh_catalog(force=True) == 6 and len(calls) == 2
    settings.DOCE_PROVIDER_CATALOG_MAX_AGE_HOURS = 0
    assert tasks.refresh_catalog() == 6


def test_the_beat_schedule_has_the_tasks(settings):
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert {"providers.refresh_catalog", "providers.reap_oauth_flows"} <= scheduled


def test_after_a_failed_refresh_the_task_waits_before_trying_again(monkeypatch):
    calls = []

    def fail():
        calls.append(1)
        raise CatalogUnavailable("could not read the catalog from OpenCode: no binary")

    monkeypatch.setattr(catalog_fetch_module, "catalog_fetch", fail)
    assert tasks.refresh_catalog() == 0
    assert tasks.refresh_catalog() == 0
    assert len(calls) == 1
    monkeypatch.setattr(
        catalog_fetch_module, "catalog_fetch", lambda: (trim_catalog(PROVIDERS, METHODS), "1")
    )
    assert tasks.refresh_catalog(force=True) == 6  # the command / an operator does not wait
