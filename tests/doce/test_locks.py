"""doce.locks: one holder at a time across processes, a clear refusal past the wait."""

from __future__ import annotations

import multiprocessing

import pytest
from django.conf import settings

from doce.locks import LockBusy, file_lock, lock_path


def _hold(data_dir: str, started, release) -> None:
    settings.DOCE_DATA_DIR = data_dir
    with file_lock("shared", timeout=0):
        started.set()
        release.wait(30)


def test_another_process_holding_the_lock_makes_the_caller_wait_then_refuse(settings, tmp_path):
    settings.DOCE_DATA_DIR = str(tmp_path)
    context = multiprocessing.get_context("fork")
    started, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(tmp_path), started, release))
    holder.start()
    try:
        assert started.wait(30)
        with pytest.raises(LockBusy), file_lock("shared", timeout=0.1):
            pass
        with pytest.raises(KeyError), file_lock("shared", timeout=0, busy=lambda: KeyError()):
            pass
    finally:
        release.set()
        holder.join(30)
    with file_lock("shared", timeout=5):  # let go when its holder ended
        assert lock_path("shared").stat().st_mode & 0o777 == 0o600
