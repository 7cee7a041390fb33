"""Real OpenCode servers for integration tests: started, checked, always stopped."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.stub_llm import StubLLM
from doce.opencode import OpenCodeClient, binary
from doce.opencode.runtimes import CustomProvider, RuntimeState, ServerSpec
from doce.opencode.runtimes.local import LocalRuntime
from tests.doce.opencode.fakes import processes_in


def require_binary() -> Path:
    """The pinned binary, or a failure that says how to get it (never a skip: CI must
    run these tests)."""
    path = binary.find()
    if path is None:
        pytest.fail(
            "The OpenCode binary is missing, so the OpenCode integration tests cannot run. "
            "Run `make setup` (npm install puts it in "
            "node_modules/opencode-linux-x64/bin/opencode) "
            "or set DOCE_OPENCODE_BIN.",
            pytrace=False,
        )
    return path


def stub_spec(name: str, data_dir: Path, stub: StubLLM) -> ServerSpec:
    return ServerSpec(
        name=name,
        data_dir=data_dir,
        model=f"stub/{stub.model}",
        password=secrets.token_urlsafe(24),
        custom_providers=(CustomProvider("stub", "Stub", stub.base_url, [stub.model]),),
    )


@dataclass
class Server:
    runtime: LocalRuntime
    spec: ServerSpec
    state: RuntimeState

    def client(self, **options) -> OpenCodeClient:
        return self.runtime.client(self.state, self.spec.password, **options)


@contextlib.contextmanager
def running_server(spec: ServerSpec, *, healthy: bool = True) -> Iterator[Server]:
    """Start (and wait for health); on the way out stop it and prove nothing is left."""
    require_binary()
    runtime = LocalRuntime()
    state = runtime.start(spec)
    try:
        if healthy:
            runtime.wait_healthy(state, spec.password)
        yield Server(runtime, spec, state)
    finally:
        runtime.stop(state)
        left = processes_in(Path(spec.data_dir))
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert not left, f"processes left behind by {spec.project_id}: {left}"


def text_of(reply: dict) -> str:
    return "".join(part.get("text", "") for part in reply["parts"] if part["type"] == "text")
