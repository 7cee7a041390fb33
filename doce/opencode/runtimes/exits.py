"""Servers that exited on their own, the moment they did.

The process that spawned a local server collects its exit status in a thread
(``local._collect_when_done``); that thread reports it here, and whoever cares (the
projects app marks the project, see ``projects.reconcile``) registers a listener. The
runtimes know nothing of projects: a listener gets the server's identity and finds its
own row. A listener runs in that thread; one that fails is logged, the others still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerExit:
    runtime: str
    pid: int
    data_dir: str
    returncode: int


_LISTENERS: list[Callable[[ServerExit], None]] = []


def listener_register(listener: Callable[[ServerExit], None]) -> None:
    """Call ``listener`` whenever a server this process spawned exits (registering the
    same function twice is harmless)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def server_exited(event: ServerExit) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(event)
        except Exception:
            logger.exception("a listener failed on the exit of server pid %s", event.pid)
