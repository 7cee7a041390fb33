"""A server's ``opencode.json``: its model, its custom providers, operator extras, and
the providers and models its owner may use (``ModelLimits``).

For a provider declared in opencode.json, ``options.apiKey`` wins over the credential
set through ``PUT /auth``, so the file never carries one: keys only reach a server
through the client, and a key rotation then takes effect.

A provider's other settings (``ProviderConfig``) are written here too: its non-secret
options into the file, and its secrets into files of the server's own home (mode 0600):
a header value in ``HEADERS_DIR``, referred to from the file as ``{file:~/...}``; an AWS
credentials file or a Google service-account JSON where the SDKs look for them. Every
write replaces what an earlier write left there (docs/providers.md).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from doce.opencode.runtimes.base import PREVIEW_PORT_ENV, ModelLimits, RuntimeFailure, ServerSpec
from doce.opencode.types import HOME_CREDENTIAL_FILES, ProviderConfig

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
#: The folder of the server's home that holds secret header values, one file each.
HEADERS_DIR = ".config/doce/headers"
#: doce's instructions to the agent (``instructions`` in opencode.json), in the home.
INSTRUCTIONS_FILE = ".config/doce/instructions/doce.md"
INSTRUCTIONS = f"""# How the user sees the site

The user watches the site in doce's preview while you work, and it reloads by itself.

- A static site: `index.html` at the top of this folder is the home page. Use relative
  links (`style.css`, `about/`), not ones that start with `/`.
- A site that needs a dev server (Vite, Astro, `npm run dev`): start it in the
  background, listening on the port in the `{PREVIEW_PORT_ENV}` environment variable
  (e.g. `npm run dev -- --port "${PREVIEW_PORT_ENV}" --strictPort &`, or
  `python3 -m http.server "${PREVIEW_PORT_ENV}" &`). While something listens there, the
  preview shows it instead of the static files. No other port is visible to the user.
"""
#: The home's folders that hold what ``write_provider_files`` writes: always created,
#: so a runtime whose home is not on the host (docker) can mount them read-only.
HOME_FILE_FOLDERS = tuple(
    sorted(
        {
            HEADERS_DIR,
            os.path.dirname(INSTRUCTIONS_FILE),
            *(os.path.dirname(path) for path in HOME_CREDENTIAL_FILES),
        }
    )
)
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
    """Base defaults, then the operator's config, then the server's own model and
    providers (which win); any ``apiKey`` is removed, wherever it came from."""
    config = deep_merge(BASE_CONFIG, operator or {})
    own: dict[str, Any] = {"model": spec.model}
    providers = {p.id: p.to_config() for p in spec.custom_providers}
    for provider in spec.provider_configs:
        options = dict(provider.options)
        if provider.headers:
            options["headers"] = {
                name: "{file:~/" + relative + "}"
                for name, relative in zip(provider.headers, header_files(provider), strict=True)
            }
        if options:
            providers[provider.provider_id] = deep_merge(
                providers.get(provider.provider_id, {}), {"options": options}
            )
    if providers:
        own["provider"] = providers
    config = deep_merge(config, own)
    operator_instructions = config.get("instructions")
    config["instructions"] = [
        *(operator_instructions if isinstance(operator_instructions, list) else []),
        "~/" + INSTRUCTIONS_FILE,
    ]
    apply_model_limits(config, spec.model_limits)
    for provider_id, provider in (config.get("provider") or {}).items():
        options = provider.get("options") if isinstance(provider, dict) else None
        if isinstance(options, dict) and options.pop("apiKey", None) is not None:
            logger.warning(
                "removed options.apiKey of provider %r from opencode.json: keys are "
                "injected through OpenCode's auth API only",
                provider_id,
            )
    return config


def apply_model_limits(config: dict[str, Any], limits: ModelLimits) -> None:
    """Write the owner's model-access limits into ``config``, over the operator's own:
    an allow-list (``enabled_providers``, a ``whitelist``) narrows the operator's, a deny
    list (``disabled_providers``, a ``blacklist``) adds to it."""
    wanted = limits.to_config()

    def narrowed(ours: list[str], theirs: Any) -> list[str]:
        return [item for item in ours if item in theirs] if isinstance(theirs, list) else ours

    def added(ours: list[str], theirs: Any) -> list[str]:
        return list(dict.fromkeys([*(theirs if isinstance(theirs, list) else []), *ours]))

    if "enabled_providers" in wanted:
        config["enabled_providers"] = narrowed(
            wanted["enabled_providers"], config.get("enabled_providers")
        )
    if "disabled_providers" in wanted:
        config["disabled_providers"] = added(
            wanted["disabled_providers"], config.get("disabled_providers")
        )
    for provider_id, lists in (wanted.get("provider") or {}).items():
        if not isinstance(config.get("provider"), dict):
            config["provider"] = {}
        provider = config["provider"].setdefault(provider_id, {})
        if "whitelist" in lists:
            provider["whitelist"] = narrowed(lists["whitelist"], provider.get("whitelist"))
        if "blacklist" in lists:
            provider["blacklist"] = added(lists["blacklist"], provider.get("blacklist"))


def write_opencode_config(spec: ServerSpec, operator: dict[str, Any] | None = None) -> Path:
    """The workspace's opencode.json, and first the home files it refers to."""
    path = spec.layout.workspace / "opencode.json"
    config = render_opencode_config(spec, load_operator_config() if operator is None else operator)
    write_provider_files(spec.layout.home, spec.provider_configs)
    write_instructions(spec.layout.home)
    write_private(path, json.dumps(config, indent=2) + "\n")
    return path


def write_instructions(home: Path) -> None:
    """doce's instructions to the agent (INSTRUCTIONS), written as the provider files
    are: never following a link the agent left in its home."""
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _write_file(home_fd, INSTRUCTIONS_FILE, INSTRUCTIONS)
    finally:
        os.close(home_fd)


def header_files(provider: ProviderConfig) -> list[str]:
    """Where each of ``provider``'s header values goes, relative to the home (the
    provider id is a plain word: lower-case letters, digits, ``._-``)."""
    return [
        f"{HEADERS_DIR}/{provider.provider_id}.{index}" for index in range(len(provider.headers))
    ]


def write_provider_files(home: Path, providers: Sequence[ProviderConfig]) -> None:
    """Make the home's credential files exactly those ``providers`` need: write each
    (0600, in 0700 folders) and delete those that no provider needs any more.

    The server's agent can change its home: every folder is opened without following a
    link (a link where a folder belongs is replaced by the folder) and files are
    written and deleted relative to those folders, so nothing lands outside the home."""
    wanted: dict[str, str] = {}
    for provider in providers:
        wanted.update(provider.files)
        wanted.update(zip(header_files(provider), provider.headers.values(), strict=True))
    home_fd = os.open(home, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for folder in HOME_FILE_FOLDERS:
            fd = _open_folder(home_fd, folder, create=True)
            if fd is not None:
                os.close(fd)
        _clear_folder(home_fd, HEADERS_DIR, keep=wanted)
        for relative in HOME_CREDENTIAL_FILES:
            if relative not in wanted:
                _remove_file(home_fd, relative)
        for relative, text in wanted.items():
            _write_file(home_fd, relative, text if text.endswith("\n") else text + "\n")
    finally:
        os.close(home_fd)


def _open_folder(home_fd: int, relative: str, *, create: bool) -> int | None:
    """A descriptor of the folder ``relative`` (to the home), or None when it is missing
    and ``create`` is false. Never follows a link."""
    fd = os.dup(home_fd)
    try:
        for part in Path(relative).parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o700, dir_fd=fd)
            flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError:  # a link or a file where the folder goes
                if not create:
                    return None
                os.unlink(part, dir_fd=fd)
                os.mkdir(part, 0o700, dir_fd=fd)
                inner = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = inner
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            os.close(fd)


def _write_file(home_fd: int, relative: str, text: str) -> None:
    folder, name = os.path.split(relative)
    fd = _open_folder(home_fd, folder, create=True)
    assert fd is not None
    tmp = f".{name}.{secrets.token_hex(6)}"
    try:
        handle = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=fd
        )
        try:
            os.fchmod(handle, 0o600)  # the umask cannot widen it, but be explicit
            os.write(handle, text.encode())
        finally:
            os.close(handle)
        os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)  # replaces a link, not its target
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=fd)
        raise
    finally:
        os.close(fd)


def _remove_file(home_fd: int, relative: str) -> None:
    folder, name = os.path.split(relative)
    fd = _open_folder(home_fd, folder, create=False)
    if fd is None:
        return
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _clear_folder(home_fd: int, relative: str, *, keep: Mapping[str, str]) -> None:
    """Delete the files of the folder ``relative`` that ``keep`` does not name."""
    fd = _open_folder(home_fd, relative, create=False)
    if fd is None:
        return
    try:
        for entry in os.scandir(fd):
            if f"{relative}/{entry.name}" not in keep and not entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)


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
