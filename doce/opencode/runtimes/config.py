"""The project's ``opencode.json``: its model, its custom providers, operator extras.

For a provider declared in opencode.json, ``options.apiKey`` wins over the credential
set through ``PUT /auth``, so the file never carries one: keys only reach a server
through the client, and a key rotation then takes effect.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from django.conf import settings

from doce.opencode.runtimes.base import RuntimeFailure, ServerSpec

logger = logging.getLogger(__name__)

SCHEMA = "https://opencode.ai/config.json"
# Defaults an operator may override: no public share links, no self-update.
# The agent never asks: nobody would answer (doce shows no permission requests), so a
# session that asked would wait forever. What the agent can reach is bounded by the
# sandbox, not by these rules (OpenCode's own path checks stop `cat`, not a script).
PERMISSIONS = {
    **dict.fromkeys(
        (
            "read",
            "edit",
            "glob",
            "grep",
            "list",
            "bash",
            "task",
            "external_directory",
            "todowrite",
            "webfetch",
            "websearch",
            "lsp",
            "skill",
            "doom_loop",
        ),
        "allow",
    ),
    "question": "deny",  # a question to the user would wait forever too
}
BASE_CONFIG: dict[str, Any] = {
    "$schema": SCHEMA,
    "share": "disabled",
    "autoupdate": False,
    "permission": PERMISSIONS,
}


def load_operator_config(path: str | None = None) -> dict[str, Any]:
    """The JSON object in DOCE_OPENCODE_CONFIG (e.g. plugins, permissions), or {}."""
    path = settings.DOCE_OPENCODE_CONFIG if path is None else path
    if not path:
        return {}
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise RuntimeFailure(
            f"DOCE_OPENCODE_CONFIG={path} cannot be read as JSON: {exc}", retryable=False
        ) from None
    if not isinstance(data, dict):
        raise RuntimeFailure(
            f"DOCE_OPENCODE_CONFIG={path} must hold a JSON object", retryable=False
        )
    return data


def render_opencode_config(
    spec: ServerSpec, operator: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Base defaults, then the operator's config, then the project's own model and
    providers (which win); any ``apiKey`` is removed, wherever it came from."""
    config = deep_merge(BASE_CONFIG, operator or {})
    own: dict[str, Any] = {"model": spec.model}
    if spec.custom_providers:
        own["provider"] = {p.id: p.to_config() for p in spec.custom_providers}
    config = deep_merge(config, own)
    for provider_id, provider in (config.get("provider") or {}).items():
        options = provider.get("options") if isinstance(provider, dict) else None
        if isinstance(options, dict) and options.pop("apiKey", None) is not None:
            logger.warning(
                "removed options.apiKey of provider %r from opencode.json: keys are "
                "injected through OpenCode's auth API only",
                provider_id,
            )
    return config


def write_opencode_config(spec: ServerSpec, operator: dict[str, Any] | None = None) -> Path:
    path = spec.layout.workspace / "opencode.json"
    config = render_opencode_config(spec, load_operator_config() if operator is None else operator)
    write_private(path, json.dumps(config, indent=2) + "\n")
    return path


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """A new dict: nested objects merge, anything else (lists included) is replaced."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600: a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
