"""The supervisor starts pasta only once bwrap has set up the namespace's loopback: the
two bring ``lo`` up over netlink, and a collision made bwrap give up ("Failed
RTM_NEWADDR") and the server exit while starting (seen once in CI)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from doce.opencode.runtimes.sandbox import SandboxError, _wait_loopback


class Running:
    returncode = None

    def poll(self):
        return None


def test_a_namespace_with_its_loopback_up_is_ready_at_once():
    _wait_loopback(os.getpid(), Running(), time.monotonic() + 5)  # this host's: lo is up


def test_a_namespace_without_loopback_waits_and_a_bwrap_that_exited_is_said():
    # A new network namespace has `lo` down and no address until someone sets it up.
    sleeper = subprocess.Popen(["unshare", "--user", "--map-root-user", "--net", "sleep", "30"])
    try:
        table = Path(f"/proc/{sleeper.pid}/net/fib_trie")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "127.0.0.1" in table.read_text():
            time.sleep(0.01)  # until unshare has moved into its own namespace
        with pytest.raises(SandboxError, match="did not set up the sandbox's loopback"):
            _wait_loopback(sleeper.pid, Running(), time.monotonic() + 0.2)
        exited = subprocess.Popen(["true"])
        exited.wait()
        with pytest.raises(SandboxError, match="bubblewrap exited"):
            _wait_loopback(sleeper.pid, exited, time.monotonic() + 5)
    finally:
        sleeper.kill()
        sleeper.wait()
