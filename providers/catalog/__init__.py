"""The provider catalog: which providers a user can connect, how (API key, OAuth methods
and their prompts), and their models.

It comes from OpenCode itself (``providers.catalog.fetch``), trimmed and cached in the
``provider_catalog`` table; until a catalog was fetched, a built-in list of six popular
providers stands in (``providers.catalog.fallback``). Reads here are one query each.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from providers.catalog.fallback import FALLBACK, FALLBACK_IDS
from providers.models import CatalogProvider

# Shown first in the picker, in this order; the rest follow by name.
POPULAR = (
    "openrouter",
    "anthropic",
    "openai",
    "google",
    "github-copilot",
    "groq",
    "xai",
    "deepseek",
    "mistral",
    "amazon-bedrock",
    "azure",
    "togetherai",
    "fireworks-ai",
)
#: The provider whose free models OpenCode serves without a key (OpenCode Zen).
FREE_PROVIDER_ID = "opencode"


@dataclass(frozen=True)
class Prompt:
    """An input OpenCode asks for before connecting (e.g. a Cloudflare account id)."""

    type: str  # text | select
    key: str
    message: str
    placeholder: str = ""
    options: tuple[tuple[str, str], ...] = ()  # (value, label)
    when: Mapping[str, str] | None = None  # {"key", "op": "eq"|"neq", "value"}

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the prompt is asked, given the other prompts' values."""
        if not self.when:
            return True
        other = values.get(self.when.get("key", ""))
        if self.when.get("op") == "neq":
            return other != self.when.get("value")
        return other == self.when.get("value")

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Prompt:
        return cls(
            type=data.get("type", "text"),
            key=data["key"],
            message=data.get("message", data["key"]),
            placeholder=data.get("placeholder", ""),
            options=tuple(
                (str(option["value"]), str(option.get("label") or option["value"]))
                for option in data.get("options") or ()
            ),
            when=data.get("when") or None,
        )


@dataclass(frozen=True)
class AuthMethod:
    """``index`` is what OpenCode's OAuth routes take as ``method``; None for the plain
    API key of a provider without special methods."""

    index: int | None
    type: str  # api | oauth
    label: str
    prompts: tuple[Prompt, ...] = ()


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    env: tuple[str, ...] = ()
    default_model: str = ""
    auth_methods: tuple[AuthMethod, ...] = ()
    models: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (id, name)
    free_models: tuple[str, ...] = ()  # ids OpenCode serves without a key

    @property
    def methods(self) -> tuple[AuthMethod, ...]:
        """Every way to connect; a provider OpenCode lists no method for takes a key."""
        return self.auth_methods or (AuthMethod(None, "api", "API key"),)

    @property
    def api_method(self) -> AuthMethod | None:
        return next((m for m in self.methods if m.type == "api"), None)

    @property
    def oauth_methods(self) -> tuple[AuthMethod, ...]:
        return tuple(m for m in self.methods if m.type == "oauth")

    def oauth_method(self, index: int) -> AuthMethod | None:
        return next((m for m in self.oauth_methods if m.index == index), None)

    @property
    def popular(self) -> bool:
        return self.id in POPULAR

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, with_models: bool = True) -> CatalogEntry:
        return cls(
            id=data["id"],
            name=data.get("name") or data["id"],
            env=tuple(data.get("env") or ()),
            default_model=data.get("default_model") or "",
            auth_methods=tuple(
                AuthMethod(
                    index=index,
                    type=method.get("type", "api"),
                    label=method.get("label") or method.get("type", "api"),
                    prompts=tuple(Prompt.from_json(p) for p in method.get("prompts") or ()),
                )
                for index, method in enumerate(data.get("auth_methods") or ())
            ),
            models=tuple((m[0], m[1]) for m in data.get("models") or ()) if with_models else (),
            free_models=tuple(data.get("free_models") or ()) if with_models else (),
        )

    @classmethod
    def from_row(cls, row: CatalogProvider, *, with_models: bool = True) -> CatalogEntry:
        return cls.from_json(
            {
                "id": row.provider_id,
                "name": row.name,
                "env": row.env,
                "default_model": row.default_model,
                "auth_methods": row.auth_methods,
                "models": row.models if with_models else (),
                "free_models": row.free_models if with_models else (),
            },
            with_models=with_models,
        )


_FALLBACK = {data["id"]: CatalogEntry.from_json(data) for data in FALLBACK}


def position(provider_id: str, name: str, names_sorted: list[str]) -> int:
    if provider_id in POPULAR:
        return POPULAR.index(provider_id)
    return len(POPULAR) + names_sorted.index(name.lower())


def _matches(entry: CatalogEntry, query: str) -> bool:
    return query in entry.id.lower() or query in entry.name.lower()


def _fallback_entries(query: str = "") -> list[CatalogEntry]:
    order = {provider_id: i for i, provider_id in enumerate(POPULAR)}
    entries = sorted(_FALLBACK.values(), key=lambda e: (order.get(e.id, 999), e.name.lower()))
    query = query.strip().lower()
    return [entry for entry in entries if not query or _matches(entry, query)]


# --- reads ------------------------------------------------------------------------------
def catalog_entries(*, query: str = "") -> list[CatalogEntry]:
    """Every provider (popular first), optionally only those whose id or name contains
    ``query``; without models. The fallback list while nothing was fetched."""
    query = query.strip()
    rows = CatalogProvider.objects.defer("models", "free_models").order_by("position", "name")
    if query:
        rows = rows.filter(Q(name__icontains=query) | Q(provider_id__icontains=query))
    entries = [CatalogEntry.from_row(row, with_models=False) for row in rows]
    if entries or (query and CatalogProvider.objects.exists()):
        return entries
    return _fallback_entries(query)


def catalog_entry(provider_id: str) -> CatalogEntry | None:
    """One provider with its models, or None when OpenCode does not know it."""
    row = CatalogProvider.objects.filter(provider_id=provider_id).first()
    if row is not None:
        return CatalogEntry.from_row(row)
    if provider_id in _FALLBACK and not CatalogProvider.objects.exists():
        return _FALLBACK[provider_id]
    return None


def catalog_ids() -> set[str]:
    """Every provider id the catalog has (the fallback's included, always): ids a custom
    provider may not take."""
    return set(CatalogProvider.objects.values_list("provider_id", flat=True)) | FALLBACK_IDS


def catalog_names(provider_ids: Iterable[str]) -> dict[str, str]:
    """Display names for ``provider_ids`` (one query); unknown ids are left out."""
    provider_ids = set(provider_ids)
    names = {pid: entry.name for pid, entry in _FALLBACK.items() if pid in provider_ids}
    names.update(
        CatalogProvider.objects.filter(provider_id__in=provider_ids).values_list(
            "provider_id", "name"
        )
    )
    return names


def catalog_models(provider_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """``{provider id: [(model id, name)]}`` for the known ones among ``provider_ids``."""
    provider_ids = set(provider_ids)
    models = {pid: list(e.models) for pid, e in _FALLBACK.items() if pid in provider_ids}
    for provider_id, rows in CatalogProvider.objects.filter(
        provider_id__in=provider_ids
    ).values_list("provider_id", "models"):
        models[provider_id] = [(m[0], m[1]) for m in rows or ()]
    return models


def catalog_models_detailed(
    provider_ids: Iterable[str],
) -> dict[str, tuple[str, list[tuple[str, str, dict[str, float]]]]]:
    """``{provider id: (name, [(model id, name, facts)])}`` for the known ones among
    ``provider_ids``, in one query. ``facts``: the context size (``context``, tokens) and
    price (``input``, ``output``: dollars per million tokens) where the fetched catalog
    knows them (``fetch._model_facts``); the built-in list knows none."""
    provider_ids = set(provider_ids)
    detailed = {
        pid: (entry.name, [(m, name, {}) for m, name in entry.models])
        for pid, entry in _FALLBACK.items()
        if pid in provider_ids
    }
    for provider_id, name, rows in CatalogProvider.objects.filter(
        provider_id__in=provider_ids
    ).values_list("provider_id", "name", "models"):
        detailed[provider_id] = (
            name,
            [
                (m[0], m[1], m[2] if len(m) > 2 and isinstance(m[2], dict) else {})
                for m in rows or ()
            ],
        )
    return detailed


def free_models() -> dict[str, str]:
    """``{model id: name}`` of the models every user may pick without connecting a key:
    OpenCode Zen's free ones (``FREE_PROVIDER_ID``), from the stored catalog (the
    built-in list until one is fetched); empty when ``DOCE_FREE_MODELS`` is off. One
    query."""
    if not settings.DOCE_FREE_MODELS:
        return {}
    row = (
        CatalogProvider.objects.filter(provider_id=FREE_PROVIDER_ID)
        .values_list("models", "free_models")
        .first()
    )
    if row is None:
        entry = _FALLBACK.get(FREE_PROVIDER_ID)
        models, free = (entry.models, entry.free_models) if entry else ((), ())
    else:
        models, free = row
    names = {m[0]: m[1] for m in models or ()}
    return {model_id: names.get(model_id, model_id) for model_id in free or ()}


@dataclass(frozen=True)
class CatalogStatus:
    providers: int
    fetched_at: datetime | None
    opencode_version: str

    @property
    def is_fallback(self) -> bool:
        return self.fetched_at is None


def catalog_status() -> CatalogStatus:
    latest = (
        CatalogProvider.objects.order_by("-fetched_at")
        .values_list("fetched_at", "opencode_version")
        .first()
    )
    if latest is None:
        return CatalogStatus(len(_FALLBACK), None, "")
    return CatalogStatus(CatalogProvider.objects.count(), latest[0], latest[1])


def catalog_is_stale(*, max_age: timedelta, now: datetime | None = None) -> bool:
    fetched_at = catalog_status().fetched_at
    return fetched_at is None or fetched_at < (now or timezone.now()) - max_age


# --- writes -----------------------------------------------------------------------------
def catalog_store(entries: list[dict[str, Any]], *, opencode_version: str = "") -> int:
    """Replace the stored catalog with ``entries`` (trimmed by ``fetch.trim_catalog``),
    in one transaction: readers see the old catalog or the new one, never a mix."""
    now = timezone.now()
    names_sorted = sorted(e["name"].lower() for e in entries if e["id"] not in POPULAR)
    rows = [
        CatalogProvider(
            provider_id=entry["id"],
            name=entry["name"][:200],
            position=position(entry["id"], entry["name"], names_sorted),
            env=entry.get("env") or [],
            default_model=(entry.get("default_model") or "")[:255],
            auth_methods=entry.get("auth_methods") or [],
            models=entry.get("models") or [],
            free_models=entry.get("free_models") or [],
            opencode_version=opencode_version[:50],
            fetched_at=now,
        )
        for entry in entries
    ]
    with transaction.atomic():
        CatalogProvider.objects.all().delete()
        CatalogProvider.objects.bulk_create(rows, batch_size=200)
    return len(rows)
