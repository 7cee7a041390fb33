"""Fixtures for the client and runtime tests: fakes for the fast tests, and a tracker
that stops every server a test started, also when the test fails."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from doce.opencode.runtimes import CustomProvider, Runtime, RuntimeState, ServerSpec
from tests.doce.opencode.fakes import FakeDocker, FakeOpenCode, processes_in


@pytest.fixture
def fake_opencode(tmp_path: Path, settings) -> FakeOpenCode:
    fake = FakeOpenCode(tmp_path / "bin")
    settings.DOCE_OPENCODE_BIN = str(fake.path)
    # A Python script of this checkout: it cannot run inside the sandbox, which sees
    # neither the checkout nor its virtualenv (the real binary is sandboxed in tests/integration).
    settings.DOCE_SANDBOX = "off"
    settings.DOCE_OPENCODE_STOP_GRACE = 0.5
    settings.DOCE_OPENCODE_START_TIMEOUT = 15
    return fake


@pytest.fixture
def fake_docker(tmp_path: Path, settings, monkeypatch) -> FakeDocker:
    fake = FakeDocker(tmp_path / "docker-bin")
    monkeypatch.setenv("PATH", f"{fake.folder}{os.pathsep}{os.environ['PATH']}")
    settings.DOCE_DOCKER_BIN = "docker"
    return fake


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., ServerSpec]:
    def make(name: int | str = 1, **overrides) -> ServerSpec:
        values = {
            "name": str(name),
            "data_dir": tmp_path / "projects" / str(name),
            "model": "stub/stub-model",
            "password": secrets.token_urlsafe(24),
            "custom_providers": (
                CustomProvider("stub", "Stub", "http://127.0.0.1:9/v1", ["stub-model"]),
            ),
        }
        values.update(overrides)
        return ServerSpec(**values)

    return make


class Started:
    """Remembers what a test started and stops all of it at teardown."""

    def __init__(self) -> None:
        self.items: list[tuple[Runtime, RuntimeState]] = []

    def start(self, runtime: Runtime, spec: ServerSpec) -> RuntimeState:
        state = runtime.start(spec)
        self.items.append((runtime, state))
        return state

    def stop_all(self) -> None:
        for runtime, state in self.items:
            with contextlib.suppress(Exception):  # teardown goes on to the next server
                runtime.stop(state)


@pytest.fixture
def started(tmp_path: Path) -> Iterator[Started]:
    tracker = Started()
    try:
        yield tracker
    finally:
        tracker.stop_all()
        left = processes_in(tmp_path)
        for pid in left:  # do not leak them into the next tests, then fail
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind: {left}"
