"""Stopping the processes doce starts in their own process groups (its web server and
workers under `make run`, the benchmark's worker).

The main process of each gets SIGTERM alone: a Celery worker's warm shutdown lets a
running task finish and stops its pool's processes itself. Signalling the whole group
instead kills those processes under it, and the main one can then hang on a lock that a
killed one held. Whatever is left after the grace period, or after an interrupt while
waiting, is killed group by group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable


def stop_gracefully(children: Iterable[subprocess.Popen], *, grace: float) -> None:
    children = list(children)
    try:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        for child in children:
            kill_group(child)


def kill_group(child: subprocess.Popen) -> None:
    """SIGKILL the child's process group (it was started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()
