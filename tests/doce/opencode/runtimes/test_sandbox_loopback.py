"""The supervisor starts pasta only once bwrap has set up the namespace's loopback: the
two bring ``lo`` up over netlink, and a collision made bwrap give up ("Failed
RTM_NEWADDR") and the server exit while starting (seen once in CI)."""

from __future__ import annotations

import os
import subprocess
import time

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
    # It says "ready" from inside the namespace, so the wait below starts after the move.
    sleeper = subprocess.Popen(
        ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", "echo ready; exec sleep 30"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sleeper.stdout.readline() == "ready\n"
        with pytest.raises(SandboxError, match="did not set up the sandbox's loopback"):
            _wait_loopback(sleeper.pid, Running(), time.monotonic() + 0.2)
        exited = subprocess.Popen(["true"])
        exited.wait()
        with pytest.raises(SandboxError, match="bubblewrap exited"):
            _wait_loopback(sleeper.pid, exited, time.monotonic() + 5)
    finally:
        sleeper.kill()
        sleeper.wait()
