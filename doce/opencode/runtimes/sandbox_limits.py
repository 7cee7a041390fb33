"""The bounds of locally started servers, from doce's side: the ``Bounds`` a sandbox's
plan carries (from ``limits.server_limits()``), and which of them this machine cannot
enforce, for the system check, ``/healthz`` and the admin index (``DOCE_LIMITS=auto``),
or to refuse to start servers at all (``DOCE_LIMITS=required``). The supervisor
enforces them (``sandbox_bounds.py``).
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from pathlib import Path

from django.conf import settings

from doce.opencode.runtimes import sandbox_bounds
from doce.opencode.runtimes.base import Layout, RuntimeFailure
from doce.opencode.runtimes.limits import server_limits

# How long a finding of the machine check holds (an operator may delegate meanwhile).
_CHECK_TTL = 60.0
_SANDBOX_OFF = "DOCE_SANDBOX=off: servers run without the sandbox, so without bounds"
HINT = (
    "give doce a cgroup subtree it may write (docs/sandbox.md, Bounds: systemd "
    "Delegate=yes, or the compose file's cgroup settings), or set DOCE_LIMITS=auto to "
    "run servers with the bounds that can be enforced"
)


def required() -> bool:
    return settings.DOCE_LIMITS == "required"


def plan_bounds(layout: Layout) -> sandbox_bounds.Bounds:
    limits = server_limits()
    return sandbox_bounds.Bounds(
        memory_bytes=limits.memory_bytes,
        pids=limits.pids,
        cpus=limits.cpus,
        disk_bytes=limits.disk_bytes,
        required=required(),
        exit_file=str(exit_file(layout)),
    )


def exit_file(layout: Layout) -> Path:
    return layout.data_dir / sandbox_bounds.EXIT_FILE


def problems(*, sandboxed: bool = True) -> list[str]:
    """The bounds this machine cannot enforce, each with why ([] when all can)."""
    if not sandboxed:
        return [_SANDBOX_OFF]
    return list(_problems(int(time.monotonic() // _CHECK_TTL)))


@functools.lru_cache(maxsize=2)
def _problems(_epoch: int) -> tuple[str, ...]:
    """Try it: create (and remove) a group with every bound, as a server would get."""
    limits = server_limits()
    probe = sandbox_bounds.Bounds(memory_bytes=limits.memory_bytes, pids=limits.pids, cpus=1.0)
    group = sandbox_bounds.ServerGroup(f"probe{os.getpid()}", probe)
    try:
        group.create()
    finally:
        with contextlib.suppress(OSError):
            group.remove()
    return tuple(group.problems)


def warning(*, sandboxed: bool = True) -> str:
    """One line for start-up, /healthz and the admin index ("" when all is enforced)."""
    found = problems(sandboxed=sandboxed)
    if not found:
        return ""
    return f"OpenCode servers run without some of their bounds: {'; '.join(found)}."


def require(*, sandboxed: bool = True) -> None:
    """DOCE_LIMITS=required: RuntimeFailure (not retryable) unless every bound holds."""
    if not required():
        return
    found = problems(sandboxed=sandboxed)
    if found:
        raise RuntimeFailure(
            f"the server's bounds cannot be enforced (DOCE_LIMITS=required): "
            f"{'; '.join(found)}; {HINT}",
            retryable=False,
        )


def stop_reason(layout: Layout) -> str:
    """Why a bound stopped the server in ``layout`` ("" when none did)."""
    return sandbox_bounds.exit_record_read(exit_file(layout))


def stop_reason_clear(layout: Layout) -> None:
    sandbox_bounds.exit_record_clear(exit_file(layout))
