"""Stopping a real OpenCode server leaves no process behind, at any moment."""

from __future__ import annotations

import logging
import os
import time

import pytest

from bench.stub_llm import StubLLM
from doce.opencode.runtimes import RuntimeStatus
from doce.opencode.runtimes.local import LocalRuntime
from tests.doce.opencode.fakes import StallingNpmRegistry, processes_in
from tests.doce.opencode.servers import require_binary, running_server, stub_spec

pytestmark = pytest.mark.integration


@pytest.fixture
def stub():
    with StubLLM() as server:
        yield server


def assert_gone(pid: int, data_dir) -> None:
    assert not processes_in(data_dir), "a process still runs in the project's folder"
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone


def test_stop_right_after_start(stub, tmp_path):
    require_binary()
    runtime = LocalRuntime()
    spec = stub_spec("early", tmp_path / "early", stub)
    state = runtime.start(spec)
    try:
        stopped = runtime.stop(state)  # before it is even healthy
    finally:
        runtime.stop(state)
    assert_gone(state.pid, tmp_path)
    assert runtime.status(stopped) is RuntimeStatus.STOPPED
    assert runtime.status(state) is RuntimeStatus.CRASHED  # the old state: not running


@pytest.mark.parametrize("sandbox", ["off", "on"])
def test_stop_during_the_background_npm_install(stub, tmp_path, settings, caplog, sandbox):
    """OpenCode installs @opencode-ai/plugin with npm when it builds an instance; while
    npm is in its install step the server ignores SIGTERM. A local registry that never
    delivers the tarball holds npm in that step. Unsandboxed, the stop ladder escalates;
    sandboxed, ending the sandbox ends everything in it at once."""
    settings.DOCE_OPENCODE_STOP_GRACE = 1.5
    settings.DOCE_SANDBOX = sandbox
    with StallingNpmRegistry() as registry:
        settings.DOCE_OPENCODE_NPM_OFFLINE = False
        settings.DOCE_OPENCODE_NPM_REGISTRY = registry.url
        spec = stub_spec("npm", tmp_path / "npm", stub)
        with running_server(spec) as server:
            with server.client() as client:
                client.session_list()  # builds the instance: npm starts
            assert registry.tarball_requested.wait(30), "npm never reached its install step"
            began = time.monotonic()
            with caplog.at_level(logging.WARNING, logger="doce.opencode.runtimes.local"):
                server.runtime.stop(server.state)
            if sandbox == "off":
                # Proof that this test still exercises the pitfall it is about.
                assert "outlived SIGTERM" in caplog.text
            else:
                assert time.monotonic() - began < settings.DOCE_OPENCODE_STOP_GRACE * 2
            assert_gone(server.state.pid, tmp_path)
