"""Fetch the catalog from OpenCode: ``GET /provider`` and ``GET /provider/auth`` on a
short-lived server with an empty home (its own throw-away folder), then trim it to what
doce needs: ids, names, env variables, models (ids, names, and context size and price where
known) and auth methods with their
prompts. The answer of ``GET /provider`` is about 6 MB; what is kept is a tenth of it.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
from collections.abc import Mapping
from typing import Any

from doce import capacity
from doce.opencode import OpenCodeError
from doce.opencode.runtimes import LocalRuntime, RuntimeFailure, ServerSpec, scratch_dir
from providers.catalog import FREE_PROVIDER_ID, catalog_store
from providers.models import PROVIDER_ID_RE

logger = logging.getLogger(__name__)

# opencode.json needs a model; the throw-away server never prompts, so any will do.
PLACEHOLDER_MODEL = "opencode/big-pickle"
_PROVIDER_ID = re.compile(PROVIDER_ID_RE)
# A prompt key becomes a form field name.
_PROMPT_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
# The server takes a slot of the server ledger (doce.capacity); refused, not queued.
CATALOG_SERVERS = capacity.kind_register("catalog")


class CatalogUnavailable(Exception):
    """OpenCode could not be started or asked; the stored catalog stays as it was."""


def catalog_servers_stop_all() -> int:
    """Stop catalog servers left by a worker that died during a read (``stop_servers``)."""
    runtime = LocalRuntime()
    stopped = 0
    for key, state in capacity.slots_with_servers(CATALOG_SERVERS):
        try:
            runtime.remove(state)
            stopped += 1
        except RuntimeFailure as exc:
            logger.warning("catalog server %s did not stop: %s", key, exc.message)
        capacity.slot_release(kind=CATALOG_SERVERS, key=key)
    return stopped


def catalog_fetch() -> tuple[list[dict[str, Any]], str]:
    """The trimmed catalog and the OpenCode version that gave it. Always the local
    runtime: the server only lives for the two requests."""
    token = secrets.token_hex(8)
    runtime = LocalRuntime()
    spec = ServerSpec(
        name=f"catalog-{token}",
        data_dir=scratch_dir("catalog") / token,
        model=PLACEHOLDER_MODEL,
        password=secrets.token_urlsafe(24),
    )
    state = None
    try:
        capacity.slot_take(kind=CATALOG_SERVERS, key=token)
    except capacity.CapacityFull as exc:
        raise CatalogUnavailable(f"could not start OpenCode to read the catalog: {exc}") from exc
    try:
        state = runtime.start(spec)
        capacity.slot_attach(kind=CATALOG_SERVERS, key=token, state=state)
        health = runtime.wait_healthy(state, spec.password)
        with runtime.client(state, spec.password) as client:
            providers = client.providers()
            methods = client.provider_auth_methods()
    except (RuntimeFailure, OpenCodeError) as exc:
        raise CatalogUnavailable(f"could not read the catalog from OpenCode: {exc}") from exc
    finally:
        if state is not None:
            runtime.remove(state)
        else:
            shutil.rmtree(spec.data_dir, ignore_errors=True)
        capacity.slot_release(kind=CATALOG_SERVERS, key=token)
    return trim_catalog(providers, methods), str(health.get("version") or "")


def catalog_refresh() -> int:
    """Fetch and store the catalog; the number of providers stored."""
    entries, version = catalog_fetch()
    if not entries:
        raise CatalogUnavailable("OpenCode answered an empty catalog")
    count = catalog_store(entries, opencode_version=version)
    logger.info("stored a catalog of %d providers from OpenCode %s", count, version)
    return count


# --- trimming ---------------------------------------------------------------------------
def trim_catalog(providers: Mapping[str, Any], methods: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``GET /provider`` + ``GET /provider/auth`` -> ``[{"id", "name", "env",
    "default_model", "auth_methods", "models", "free_models"}]``. Providers that only a
    plugin declares (in ``/provider/auth`` but not in the catalog) are kept, without
    models. ``free_models``: see ``_free_models``."""
    defaults = providers.get("default") or {}
    entries: dict[str, dict[str, Any]] = {}
    for provider in providers.get("all") or ():
        provider_id = provider.get("id") if isinstance(provider, dict) else None
        if not isinstance(provider_id, str) or not _PROVIDER_ID.match(provider_id):
            continue
        models = _trim_models(provider.get("models") or {})
        default = defaults.get(provider_id) or ""
        model_ids = [model[0] for model in models]
        entries[provider_id] = {
            "id": provider_id,
            "name": str(provider.get("name") or provider_id),
            "env": [str(name) for name in provider.get("env") or () if isinstance(name, str)],
            "default_model": default if default in model_ids else (model_ids or [""])[0],
            "auth_methods": _trim_methods(methods.get(provider_id)),
            "models": [list(model) for model in models],
            "free_models": _free_models(provider_id, provider.get("models") or {}, model_ids),
        }
    for provider_id, provider_methods in methods.items():
        if provider_id not in entries and _PROVIDER_ID.match(str(provider_id)):
            entries[provider_id] = {
                "id": provider_id,
                "name": provider_id,
                "env": [],
                "default_model": "",
                "auth_methods": _trim_methods(provider_methods),
                "models": [],
                "free_models": [],
            }
    return list(entries.values())


def _free_models(provider_id: str, models: Mapping[str, Any], kept: list[str]) -> list[str]:
    """The models OpenCode serves with no key: only the ``opencode`` provider (OpenCode
    Zen) has such, the ones that cost nothing. (A server without a Zen key lists only
    those, with ``options.apiKey`` "public"; with a key, every Zen model.)"""
    if provider_id != FREE_PROVIDER_ID:
        return []
    free = set()
    for model_id, model in models.items():
        cost = model.get("cost") if isinstance(model, dict) else None
        if isinstance(cost, dict) and cost.get("input") == 0 and cost.get("output") == 0:
            free.add(str(model_id))
    return [model_id for model_id in kept if model_id in free]


def _trim_models(models: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """Models an agent can use: not deprecated, able to call tools (when OpenCode says),
    newest first."""
    kept = []
    for model_id, model in models.items():
        if not isinstance(model, dict) or model.get("status") == "deprecated":
            continue
        capabilities = model.get("capabilities") or {}
        if capabilities.get("toolcall") is False:
            continue
        kept.append(
            (
                str(model.get("release_date") or ""),
                str(model_id),
                str(model.get("name") or model_id),
                _model_facts(model),
            )
        )
    kept.sort(key=lambda item: (item[0], item[2]), reverse=True)
    return [(model_id, name, *([facts] if facts else [])) for _, model_id, name, facts in kept]


def _model_facts(model: Mapping[str, Any]) -> dict[str, float]:
    """What the model picker shows beside a name, where OpenCode knows it: ``context``
    (tokens), ``input`` and ``output`` (US dollars per million tokens)."""
    facts: dict[str, float] = {}
    limit = model.get("limit") if isinstance(model.get("limit"), dict) else {}
    cost = model.get("cost") if isinstance(model.get("cost"), dict) else {}
    for key, value in (
        ("context", limit.get("context")),
        ("input", cost.get("input")),
        ("output", cost.get("output")),
    ):
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            facts[key] = value
    return facts


def _trim_methods(methods: Any) -> list[dict[str, Any]]:
    """OpenCode's auth methods in its order (the index is the ``method`` its OAuth
    routes take). A method whose prompts doce cannot show becomes unusable, not dropped,
    so the indexes stay right."""
    trimmed = []
    for method in methods or ():
        if not isinstance(method, dict):
            method = {}
        kind = method.get("type") if method.get("type") in ("api", "oauth") else "unsupported"
        prompts = []
        for prompt in method.get("prompts") or ():
            clean = _trim_prompt(prompt)
            if clean is None:
                kind = "unsupported"
                break
            prompts.append(clean)
        trimmed.append(
            {"type": kind, "label": str(method.get("label") or kind)[:200], "prompts": prompts}
        )
    return trimmed


def _trim_prompt(prompt: Any) -> dict[str, Any] | None:
    if not isinstance(prompt, dict) or prompt.get("type") not in ("text", "select"):
        return None
    key = prompt.get("key")
    if not isinstance(key, str) or not _PROMPT_KEY.match(key):
        return None
    clean: dict[str, Any] = {
        "type": prompt["type"],
        "key": key,
        "message": str(prompt.get("message") or key)[:300],
    }
    if prompt.get("placeholder"):
        clean["placeholder"] = str(prompt["placeholder"])[:200]
    if prompt["type"] == "select":
        options = [
            {"value": str(o["value"]), "label": str(o.get("label") or o["value"])[:200]}
            for o in prompt.get("options") or ()
            if isinstance(o, dict) and "value" in o
        ]
        if not options:
            return None
        clean["options"] = options
    when = prompt.get("when")
    if isinstance(when, dict) and isinstance(when.get("key"), str):
        clean["when"] = {
            "key": when["key"],
            "op": "neq" if when.get("op") == "neq" else "eq",
            "value": str(when.get("value", "")),
        }
    return clean
