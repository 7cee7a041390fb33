"""A lock shared by every process on this host: ``flock`` on a file under
DOCE_DATA_DIR/locks (web and worker processes, and the threads in them, each open it)."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings


class LockBusy(Exception):
    """Someone else held the lock for longer than the caller would wait."""


def lock_path(name: str) -> Path:
    return Path(settings.DOCE_DATA_DIR) / "locks" / f"{name}.lock"


@contextmanager
def file_lock(
    name: str,
    *,
    timeout: float,
    poll: float = 0.02,
    busy: Callable[[], Exception] = lambda: LockBusy("the lock is held elsewhere"),
) -> Iterator[None]:
    """Hold the lock ``name`` (waiting at most ``timeout`` seconds; 0: not at all), or
    raise ``busy()``. Closing the file lets go of it, also when the process dies."""
    path = lock_path(name)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(poll)
        yield
    finally:
        os.close(fd)
