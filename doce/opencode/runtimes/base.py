"""The runtime interface: start, check and stop one OpenCode server.

A server serves a project, an OAuth sign-in or a catalog read: runtimes know nothing of
which. The caller hands over a ``ServerSpec``
(plain values, the server password included) and stores the ``RuntimeState`` it gets
back (``state.to_dict()`` fits a JSONField); every later call takes that state, so a
process other than the one that started a server (web, worker, reconciler) can check or
stop it.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from django.conf import settings

from doce.opencode import OpenCodeClient, OpenCodeError, OpenCodeUnavailable, Unauthorized
from doce.opencode.types import ModelRef, ProviderConfig
from doce.redaction import redact

MARKER = ".doce-project"  # written into every folder a runtime prepares; see remove()


class RuntimeStatus(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"  # nothing runs, and nothing should
    CRASHED = "crashed"  # nothing runs, but the state says it was started and not stopped


class RuntimeFailure(Exception):
    """A runtime could not do what it was asked; ``retryable`` as for OpenCode errors."""

    retryable = True

    def __init__(self, message: str, *, retryable: bool | None = None, log_tail: str = ""):
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail
        if retryable is not None:
            self.retryable = retryable


@dataclass(frozen=True)
class CustomProvider:
    """An OpenAI-compatible endpoint declared in the server's opencode.json. Its key is
    injected through ``PUT /auth/{id}`` like any other, never written into the file."""

    id: str
    name: str
    base_url: str
    models: Sequence[str] | Mapping[str, str] = ()  # ids, or id -> display name
    # US dollars per million tokens ({"input": 3.0, "output": 15.0}): every model's
    # "cost", so OpenCode reports what a reply cost; None: no price (tokens only).
    cost: Mapping[str, float] | None = None

    def to_config(self) -> dict[str, Any]:
        names = (
            dict(self.models)
            if isinstance(self.models, Mapping)
            else {model: model for model in self.models}
        )
        return {
            "npm": "@ai-sdk/openai-compatible",
            "name": self.name,
            "options": {"baseURL": self.base_url},
            "models": {
                model_id: {"name": name, **({"cost": dict(self.cost)} if self.cost else {})}
                for model_id, name in names.items()
            },
        }


@dataclass(frozen=True)
class ModelLimits:
    """Which providers and models the server offers (its owner's model-access rules,
    ``providers.access``). ``enabled_providers`` None: no allow-list; the lists take
    exact model ids (OpenCode 1.18.33 has no wildcard there)."""

    enabled_providers: Sequence[str] | None = None
    disabled_providers: Sequence[str] = ()
    whitelist: Mapping[str, Sequence[str]] = field(default_factory=dict)
    blacklist: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def to_config(self) -> dict[str, Any]:
        """The keys of ``opencode.json`` (``provider.<id>.whitelist`` and ``blacklist``)."""
        config: dict[str, Any] = {}
        if self.enabled_providers is not None:
            config["enabled_providers"] = list(self.enabled_providers)
        if self.disabled_providers:
            config["disabled_providers"] = list(self.disabled_providers)
        providers: dict[str, dict[str, list[str]]] = {}
        for key, lists in (("whitelist", self.whitelist), ("blacklist", self.blacklist)):
            for provider_id, models in lists.items():
                providers.setdefault(provider_id, {})[key] = list(models)
        if providers:
            config["provider"] = providers
        return config


@dataclass(frozen=True)
class ServerSpec:
    """What to start: ``name`` (letters, digits, ``_-``) names the server in logs and
    container names; ``data_dir`` holds its workspace and home."""

    name: str
    data_dir: Path
    model: str  # "provider/model"
    password: str = field(repr=False)
    custom_providers: Sequence[CustomProvider] = ()
    # Options, secret headers and credential files of the providers (config.py writes them).
    provider_configs: Sequence[ProviderConfig] = field(default=(), repr=False)
    # Whoever named the custom providers may open this machine's services (a staff
    # owner): doce.endpoints decides what the sandbox reaches.
    trusted_endpoints: bool = False
    # The owner's model-access rules, as opencode.json's provider and model lists.
    model_limits: ModelLimits = field(default_factory=ModelLimits)
    # More URLs the server must reach, named by staff (an organisation's URL and the
    # providers its document declares: providers.organisations): opened as trusted.
    trusted_urls: Sequence[str] = ()
    # Ports of DOCE_SERVER_PORT_RANGE that other servers are recorded with (their
    # process may have just died, unnoticed yet): never given to this one, so a link
    # to a dead server's preview never reaches this server's dev server.
    reserved_ports: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        ModelRef.parse(self.model)  # fail early on "gpt-4o" without a provider
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}", self.name):
            raise ValueError(f"server name {self.name!r} is not usable in names")
        if not self.password:
            raise ValueError("a server password is required")

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.data_dir))


#: The variable that tells the agent's dev server its port (``npm run dev``, Vite's and
#: Astro's ``--port $PORT``): the preview server proxies to it (docs/preview.md).
PREVIEW_PORT_ENV = "PORT"
#: An auth.json holds a few credentials; anything larger is not one.
MAX_AUTH_FILE_BYTES = 64 * 1024
#: How often a starting server's log is read for its "listening" line (no connection).
LISTENING_POLL_INTERVAL = 0.02


@dataclass(frozen=True)
class Layout:
    """Where a server's files live: ``workspace/`` (the server's working directory and
    opencode.json), ``home/`` (HOME and XDG folders: auth.json, sessions, caches)."""

    data_dir: Path

    @property
    def workspace(self) -> Path:
        return self.data_dir / "workspace"

    @property
    def home(self) -> Path:
        return self.data_dir / "home"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "opencode.log"

    @property
    def dev_socket(self) -> Path:
        """Docker runtime only: the Unix socket that reaches the site's dev server
        (``PORT`` inside the project's network namespace). doce's folder, never the
        agent's: the agent's container does not mount it."""
        return self.data_dir / "devport" / "dev.sock"

    @property
    def auth_file(self) -> Path:
        """Local runtime only: the docker runtime keeps the home in a named volume
        (``Runtime.auth_file_read`` reads either)."""
        return self.home / ".local" / "share" / "opencode" / "auth.json"

    def prepare(self) -> None:
        """Create the folders with mode 0700: they hold credentials and the user's site."""
        for folder in (self.data_dir, self.workspace, self.home, self.home / "tmp"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask
        (self.data_dir / MARKER).touch(mode=0o600, exist_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_file, "rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 16_384))
                text = handle.read().decode(errors="replace")
        except OSError:
            return ""
        return redact("\n".join(text.splitlines()[-lines:]))


@dataclass(frozen=True)
class RuntimeState:
    """What a started server is: store it, pass it back. ``active`` turns False when the
    server was stopped on purpose, which tells "stopped" from "crashed"."""

    runtime: str
    data_dir: str
    port: int
    directory: str  # the workspace as the server sees it (``?directory=``)
    active: bool = True
    pid: int | None = None
    process_started_at: float | None = None  # psutil create_time: pids get reused
    container_name: str | None = None
    compose_project: str | None = None
    # The site's dev server port (``PORT`` inside, forwarded inward like ``port``; the
    # preview server proxies to 127.0.0.1:<it>, docs/preview.md). None: none.
    preview_port: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def layout(self) -> Layout:
        return Layout(Path(self.data_dir))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuntimeState:
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in known})


class Runtime(ABC):
    name: ClassVar[str]
    # How often wait_healthy asks is_alive(): cheap for a pid, a docker call otherwise.
    alive_check_interval: ClassVar[float] = 0.0

    @abstractmethod
    def start(self, spec: ServerSpec) -> RuntimeState:
        """Prepare folders and opencode.json, launch the server and return at once
        (``wait_healthy`` waits). Stops a leftover server of the same folder first."""

    @abstractmethod
    def stop(self, state: RuntimeState) -> RuntimeState:
        """Stop the server if it still runs and is this spec's own; returns the state
        to store (inactive). Safe to call twice."""

    @abstractmethod
    def remove(self, state: RuntimeState) -> None:
        """Stop and delete everything the server had: folders, volumes."""

    @abstractmethod
    def is_alive(self, state: RuntimeState) -> bool:
        """True while the server's own process or container runs."""

    @abstractmethod
    def auth_file_read(self, state: RuntimeState) -> bytes | None:
        """The server's auth.json as it is now (OpenCode writes refreshed OAuth tokens
        there), or None when there is none or it is not a plain file of at most
        MAX_AUTH_FILE_BYTES. The file is written where the agent runs: never follow it
        out of the server's own files."""

    def dev_server(self, state: RuntimeState) -> tuple[int, Path | None] | None:
        """Where the site's dev server answers for the preview (docs/preview.md): the
        port it listens on and, when that is not the host's ``127.0.0.1:<port>``, the
        Unix socket that reaches it. None: this server has none."""
        if state.preview_port is None:
            return None
        return state.preview_port, None

    def stop_reason(self, state: RuntimeState) -> str:
        """Why the server was stopped by one of its bounds ("it reached its memory bound
        of 2 GiB"), or "" (still running, stopped on purpose, crashed otherwise, or a
        runtime that cannot tell)."""
        return ""

    def status(self, state: RuntimeState) -> RuntimeStatus:
        if self.is_alive(state):
            return RuntimeStatus.RUNNING
        return RuntimeStatus.CRASHED if state.active else RuntimeStatus.STOPPED

    def ensure_started(self, spec: ServerSpec, state: RuntimeState | None) -> RuntimeState:
        """Idempotent start for redelivered tasks: keep a server that still runs."""
        if state is not None and state.active and self.is_alive(state):
            return state
        return self.start(spec)

    def can_serve(self, started: ServerSpec, wanted: ServerSpec) -> bool:
        """Whether a server started for ``started`` may serve ``wanted`` once its
        opencode.json is rewritten for ``wanted`` (a pooled server claimed by a project):
        what the server can reach was fixed when it started."""
        return True

    def client(self, state: RuntimeState, password: str, **options: Any) -> OpenCodeClient:
        defaults = {
            "timeout": settings.DOCE_OPENCODE_REQUEST_TIMEOUT,
            "prompt_timeout": settings.DOCE_OPENCODE_PROMPT_TIMEOUT,
            "oauth_callback_timeout": settings.DOCE_OPENCODE_OAUTH_CALLBACK_TIMEOUT,
        }
        return OpenCodeClient(
            state.base_url, password, directory=state.directory, **{**defaults, **options}
        )

    def wait_healthy(
        self, state: RuntimeState, password: str, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Probe ``/global/health`` (1 s probes) until it answers or the deadline passes;
        raises RuntimeFailure with the server's log tail when it does not come up."""
        deadline = settings.DOCE_OPENCODE_START_TIMEOUT if timeout is None else timeout
        with self.client(state, password) as client:
            try:
                return client.wait_healthy(
                    deadline=deadline,
                    alive=self._throttled_alive(state),
                    listening=self._listening(state),
                )
            except Unauthorized as exc:
                raise RuntimeFailure(
                    f"port {state.port} answers with another password: not this project's server",
                    retryable=True,
                ) from exc
            except OpenCodeUnavailable as exc:
                tail = self.log_tail(state)
                raise RuntimeFailure(
                    f"OpenCode did not become healthy: {exc.message}", log_tail=tail
                ) from exc
            except OpenCodeError as exc:  # pragma: no cover - health answers 200 or 401
                raise RuntimeFailure(f"OpenCode health check failed: {exc.message}") from exc

    def log_tail(self, state: RuntimeState, lines: int = 40) -> str:
        return state.layout.log_tail(lines)

    def wait_listening(self, state: RuntimeState, *, timeout: float) -> bool | None:
        """Wait up to ``timeout`` seconds for the server to say it listens, without a
        connection to it: True once it has, False if not yet, None when this runtime
        cannot tell (only the health probe can). RuntimeFailure, with the log tail, when
        the server exited meanwhile."""
        listening = self._listening(state)
        if listening is None:
            return None
        alive = self._throttled_alive(state)
        give_up = time.monotonic() + timeout
        while not listening():
            if not alive():
                raise RuntimeFailure(
                    "OpenCode exited while starting", log_tail=self.log_tail(state)
                )
            if time.monotonic() >= give_up:
                return False
            time.sleep(LISTENING_POLL_INTERVAL)
        return True

    def _listening(self, state: RuntimeState) -> Callable[[], bool] | None:
        """Whether the server has said it listens, if this runtime can tell (None)."""
        return None

    def _throttled_alive(self, state: RuntimeState) -> Callable[[], bool]:
        last = {"at": 0.0, "alive": True}

        def alive() -> bool:
            now = time.monotonic()
            if now - last["at"] >= self.alive_check_interval:
                last["at"], last["alive"] = now, self.is_alive(state)
            return last["alive"]

        return alive


def free_port(*, avoid: Collection[int] = ()) -> int:
    """A loopback port of ``DOCE_SERVER_PORT_RANGE`` nobody listens on now (no endpoint
    may name one: doce.endpoints), none of ``avoid`` (the server's own, when picking its
    preview port; ``ServerSpec.reserved_ports``). Another process may take it before
    the server binds; the server then exits and the start is retried on a new port."""
    ports = settings.DOCE_SERVER_PORTS
    for _ in range(200):
        port = secrets.choice(ports)
        if port in avoid:
            continue
        with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeFailure(
        f"no free port in DOCE_SERVER_PORT_RANGE ({ports.start}-{ports.stop - 1}): widen it"
    )


def server_env(
    *, home: str, password: str | None, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The whole environment of an OpenCode server: its own HOME and XDG folders, the
    password, offline switches. Nothing of doce's own environment leaks in (DATABASE_URL,
    SECRET_KEY, DOCE_ENCRYPTION_KEYS, provider keys such as OPENAI_API_KEY that OpenCode
    would pick up): only ``extra`` (PATH, locale) is added. ``password`` None leaves it
    to be passed by name (docker compose reads it from the CLI's environment)."""
    env = {
        "HOME": home,
        "XDG_DATA_HOME": f"{home}/.local/share",
        "XDG_CONFIG_HOME": f"{home}/.config",
        "XDG_CACHE_HOME": f"{home}/.cache",
        "XDG_STATE_HOME": f"{home}/.local/state",
        "TMPDIR": f"{home}/tmp",  # noqa: S108 (a private folder in the home)
        "OPENCODE_SERVER_USERNAME": "opencode",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        **(extra or {}),
    }
    if settings.DOCE_OPENCODE_NPM_OFFLINE:
        env["npm_config_offline"] = "true"
    if settings.DOCE_OPENCODE_NPM_REGISTRY:
        env["npm_config_registry"] = settings.DOCE_OPENCODE_NPM_REGISTRY
    if password is not None:
        env["OPENCODE_SERVER_PASSWORD"] = password
    return env
