"""An organisation's ``/.well-known/opencode`` document, and the rules doce holds it to
before it lets OpenCode load it.

OpenCode 1.18.33 reads ``{"auth": {"command": [...], "env": "NAME"}, "config": {...}}``:
``opencode auth login`` runs ``auth.command`` and stores its output as the token, and at
every instance build the server sets ``$NAME`` to the token, fetches the document again
and merges ``config`` (after its ``{env:...}`` and ``{file:...}`` substitutions) into
the project's configuration, under everything else. doce only lets through a document
that declares providers and models:

- ``auth.env`` is an environment variable's name that is not one the server lives by
  (``PATH``, ``HOME``, ``OPENCODE_*``, ``XDG_*``...): OpenCode sets it to the token.
- ``auth.command`` is a list of words (shown to users, never run by doce).
- ``config`` holds only ``provider`` (at least one) and the model keys
  (``CONFIG_KEYS``): no MCP server, plugin, instruction file or permission from a remote
  document reaches a project.
- Each provider has a provider id, an ``npm`` package of the AI SDK OpenCode bundles
  (``@ai-sdk/...``) if any, an ``options.baseURL`` that is an http(s) URL if any, and
  its models as an object.
- The only substitution is ``{env:<auth.env>}`` (the token, in a header say): any other
  ``{env:...}`` would hand the organisation a variable of the project's server (its
  password), and any ``{file:...}`` a file of its sandbox.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from doce.inputs import has_config_substitution
from providers.models import PROVIDER_ID_RE

#: A document larger than this is refused (it declares a few providers).
MAX_DOCUMENT_BYTES = 256 * 1024
MAX_PROVIDERS = 50
MAX_MODELS = 500
MAX_COMMAND_WORDS = 50
MAX_COMMAND_WORD = 1000

#: What a document's ``config`` may hold.
CONFIG_KEYS = frozenset(
    {"$schema", "provider", "model", "small_model", "enabled_providers", "disabled_providers"}
)
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Variables the server and its tools live by: a token must not replace them.
_ENV_RESERVED = frozenset(
    {"PATH", "HOME", "SHELL", "USER", "LOGNAME", "TMPDIR", "TMP", "TEMP", "PWD", "LANG", "TERM"}
)
_ENV_RESERVED_PREFIXES = ("OPENCODE_", "XDG_", "LD_", "NODE_", "NPM_", "BUN_", "DOCE_", "LC_")
_PROVIDER_ID = re.compile(PROVIDER_ID_RE)
_NPM_PACKAGE = re.compile(r"@ai-sdk/[a-z0-9][a-z0-9-]{0,63}")
_MODEL_ID = re.compile(r"[^\s\x00-\x1f\x7f]{1,255}")


class DocumentError(Exception):
    """The document could not be fetched or breaks a rule; ``str()`` says why, in doce's
    own words (never what the remote end answered)."""


@dataclass(frozen=True)
class DeclaredProvider:
    id: str
    name: str
    #: (model id, display name), in the document's order.
    models: tuple[tuple[str, str], ...]
    base_url: str  # "" when the document names none (a provider OpenCode knows)


@dataclass(frozen=True)
class Document:
    env_name: str
    command: tuple[str, ...]
    providers: tuple[DeclaredProvider, ...]
    #: The parsed document, as fetched (stored on the organisation).
    raw: dict[str, Any]

    @property
    def endpoints(self) -> tuple[str, ...]:
        """The base URLs of the providers it declares (the project's sandbox must reach
        them)."""
        return tuple(provider.base_url for provider in self.providers if provider.base_url)

    def provider(self, provider_id: str) -> DeclaredProvider | None:
        return next((p for p in self.providers if p.id == provider_id), None)


def document_parse(body: bytes) -> Document:
    """The document in ``body`` (at most ``MAX_DOCUMENT_BYTES``), checked against the
    rules above. Raises ``DocumentError``."""
    if len(body) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KB")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentError("the document is not JSON") from exc
    return document_check(data)


def document_check(data: Any) -> Document:
    """A parsed document (a stored one too) checked against the rules. Raises
    ``DocumentError``."""
    if not isinstance(data, dict):
        raise DocumentError("the document is not a JSON object")
    auth = data.get("auth")
    if not isinstance(auth, dict):
        raise DocumentError("the document has no “auth” section")
    env_name = _env_name(auth.get("env"))
    command = _command(auth.get("command"))
    config = data.get("config")
    if not isinstance(config, dict):
        raise DocumentError("the document has no “config” section")
    extra = sorted(set(config) - CONFIG_KEYS)
    if extra:
        raise DocumentError(
            f"the document's config declares {', '.join(map(repr, extra[:5]))}: doce passes "
            "on providers and models only"
        )
    _substitutions(config, env_name)
    providers = config.get("provider")
    if not isinstance(providers, dict) or not providers:
        raise DocumentError("the document's config declares no provider")
    if len(providers) > MAX_PROVIDERS:
        raise DocumentError(f"the document declares more than {MAX_PROVIDERS} providers")
    declared = tuple(_provider(pid, entry) for pid, entry in providers.items())
    return Document(env_name=env_name, command=command, providers=declared, raw=data)


def _env_name(value: Any) -> str:
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise DocumentError("the document's auth.env is not an environment variable's name")
    if value.upper() in _ENV_RESERVED or value.upper().startswith(_ENV_RESERVED_PREFIXES):
        raise DocumentError(
            f"the document's auth.env ({value}) names a variable the OpenCode server needs"
        )
    return value


def _command(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_COMMAND_WORDS
        or not all(isinstance(word, str) and len(word) <= MAX_COMMAND_WORD for word in value)
    ):
        raise DocumentError("the document's auth.command is not a list of words")
    if any(not word.isprintable() for word in value):
        raise DocumentError("the document's auth.command holds control characters")
    return tuple(value)


def _substitutions(config: dict, env_name: str) -> None:
    """OpenCode substitutes in the text of ``config`` (JSON.stringify of it): the same
    text here, with the one allowed reference taken out, must hold no other."""
    text = json.dumps(config, ensure_ascii=False).replace(f"{{env:{env_name}}}", "")
    if has_config_substitution(text):
        raise DocumentError(
            f"the document's config uses “{{env:” or “{{file:” for something other than "
            f"{{env:{env_name}}}: OpenCode would read a variable or a file of the project's "
            "server"
        )


def _provider(provider_id: Any, entry: Any) -> DeclaredProvider:
    if not isinstance(provider_id, str) or not _PROVIDER_ID.fullmatch(provider_id):
        raise DocumentError("the document declares a provider whose id is not a provider id")
    if not isinstance(entry, dict):
        raise DocumentError(f"the document's provider {provider_id} is not an object")
    npm = entry.get("npm")
    if npm is not None and not (isinstance(npm, str) and _NPM_PACKAGE.fullmatch(npm)):
        raise DocumentError(
            f"the document's provider {provider_id} names an npm package that is not one of "
            "the AI SDK's (@ai-sdk/...)"
        )
    options = entry.get("options") or {}
    if not isinstance(options, dict):
        raise DocumentError(
            f"the document's provider {provider_id} has options that are not an object"
        )
    base_url = options.get("baseURL") or ""
    if base_url and not _http_url(base_url):
        raise DocumentError(
            f"the document's provider {provider_id} has a baseURL that is not an http(s) URL"
        )
    models = entry.get("models") or {}
    if not isinstance(models, dict) or len(models) > MAX_MODELS:
        raise DocumentError(
            f"the document's provider {provider_id} does not list its models as an object"
        )
    listed = []
    for model_id, model in models.items():
        if not isinstance(model_id, str) or not _MODEL_ID.fullmatch(model_id):
            raise DocumentError(
                f"the document's provider {provider_id} lists a model id that is not one"
            )
        name = model.get("name") if isinstance(model, dict) else None
        listed.append((model_id, str(name)[:200] if isinstance(name, str) and name else model_id))
    name = entry.get("name")
    return DeclaredProvider(
        id=provider_id,
        name=str(name)[:100] if isinstance(name, str) and name else provider_id,
        models=tuple(listed),
        base_url=base_url,
    )


def _http_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)
