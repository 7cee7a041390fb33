"""Start and stop OpenCode servers: ``get_runtime()`` picks the one DOCE_RUNTIME names.

A server may serve a project, an OAuth sign-in or a catalog read; the runtime does not
care which.

    runtime = get_runtime()
    state = runtime.start(spec)                  # store state.to_dict()
    runtime.wait_healthy(state, spec.password)
    with runtime.client(state, spec.password) as client: ...
    state = runtime.stop(state)                  # store it again
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from doce.opencode.runtimes.base import (
    CustomProvider,
    Layout,
    ModelLimits,
    Runtime,
    RuntimeFailure,
    RuntimeState,
    RuntimeStatus,
    ServerSpec,
)
from doce.opencode.runtimes.local import LocalRuntime

__all__ = [
    "CustomProvider",
    "Layout",
    "LocalRuntime",
    "ModelLimits",
    "Runtime",
    "RuntimeFailure",
    "RuntimeState",
    "RuntimeStatus",
    "ServerSpec",
    "get_runtime",
    "scratch_dir",
]


def get_runtime(name: str | None = None) -> Runtime:
    """The runtime called ``name``, by default settings.DOCE_RUNTIME ("local" | "docker")."""
    name = name or settings.DOCE_RUNTIME
    if name == "local":
        return LocalRuntime()
    if name == "docker":
        # Imported only when chosen: it needs PyYAML and the docker CLI, which the
        # embedded default does not.
        from doce.opencode.runtimes.docker import DockerComposeRuntime

        return DockerComposeRuntime()
    raise ValueError(f"unknown runtime {name!r}: use 'local' or 'docker'")


def scratch_dir(kind: str) -> Path:
    """Where short-lived servers keep their throw-away folders: DOCE_DATA_DIR/<kind>
    ("catalog", "oauth")."""
    return Path(settings.DOCE_DATA_DIR) / kind
