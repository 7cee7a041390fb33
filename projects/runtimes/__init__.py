"""Start and stop projects' OpenCode servers: ``get_runtime()`` picks the one DOCE_RUNTIME
names.

    runtime = get_runtime()
    state = runtime.start(spec)                  # store state.to_dict()
    runtime.wait_healthy(state, spec.password)
    with runtime.client(state, spec.password) as client: ...
    state = runtime.stop(state)                  # store it again
"""

from __future__ import annotations

from django.conf import settings

from projects.runtimes.base import (
    CustomProvider,
    Layout,
    ProjectSpec,
    Runtime,
    RuntimeFailure,
    RuntimeState,
    RuntimeStatus,
    project_data_dir,
)

__all__ = [
    "CustomProvider",
    "Layout",
    "ProjectSpec",
    "Runtime",
    "RuntimeFailure",
    "RuntimeState",
    "RuntimeStatus",
    "get_runtime",
    "project_data_dir",
]


def get_runtime(name: str | None = None) -> Runtime:
    """The runtime called ``name``, by default settings.DOCE_RUNTIME ("local" | "docker")."""
    name = name or settings.DOCE_RUNTIME
    if name == "local":
        from projects.runtimes.local import LocalRuntime

        return LocalRuntime()
    if name == "docker":
        from projects.runtimes.docker import DockerComposeRuntime

        return DockerComposeRuntime()
    raise ValueError(f"unknown runtime {name!r}: use 'local' or 'docker'")
