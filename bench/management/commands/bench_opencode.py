"""Benchmark a real OpenCode server as doce drives it (figures, not pass/fail).

Starts its own stub LLM (bench.stub_llm) and one project server (sandboxed, as doce's
defaults have it) in a temporary folder, then measures: start to healthy; credential
injection split into OpenCode's own cost (a bare HTTP request with a prepared body) and
doce's overhead on top (client construction, serialization, error mapping); the cost a
dispose adds to the next prompt; the first and warm prompt round trips; resident memory.
Then the sandbox's own cost: spawn to healthy of servers started alternately with and
without the sandbox, and the memory of the sandbox's processes (supervisor, bwrap,
pasta) beside OpenCode's. ``--compare-bounds`` measures only what the bounds cost
(docs/sandbox.md, Bounds): sandboxed servers with and without them, alternately.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import http.client
import json
import secrets
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import httpx
import psutil
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from bench.stub_llm import StubLLM
from doce.opencode import ApiKeyCredential, OpenCodeClient, binary
from doce.opencode.runtimes import CustomProvider, RuntimeState, ServerSpec, sandbox_plan
from doce.opencode.runtimes.local import LocalRuntime


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _median_ms(samples: list[float]) -> float:
    return _ms(statistics.median(samples))


def _rss_mb(pid: int) -> float:
    process = psutil.Process(pid)
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return round(total / 1024 / 1024, 1)


def _helpers_rss_mb(pid: int) -> float:
    """Resident memory of a server's process tree without OpenCode itself: what the
    sandbox (supervisor, bwrap, pasta) costs."""
    total = 0
    for process in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            if process.name() != "opencode":
                total += process.memory_info().rss
    return total / 1024 / 1024


class Command(BaseCommand):
    help = "Measure a real OpenCode server: start, credential injection, dispose, memory."

    def add_arguments(self, parser):
        parser.add_argument("--iterations", type=int, default=10, help="samples per figure")
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")
        parser.add_argument(
            "--compare-bounds",
            action="store_true",
            help="only the bounds' cost: sandboxed servers with and without their bounds",
        )

    def handle(self, *args, iterations: int, json: bool, compare_bounds: bool, **options):  # noqa: A002
        if iterations < 1:
            raise CommandError("--iterations must be at least 1.")
        if binary.find() is None:
            raise CommandError("The OpenCode binary is missing: run `make setup`.")
        with StubLLM(reply="ok") as stub, tempfile.TemporaryDirectory() as folder:
            spec = ServerSpec(
                name="bench",
                data_dir=Path(folder) / "bench",
                model=f"stub/{stub.model}",
                password=secrets.token_urlsafe(24),
                custom_providers=(CustomProvider("stub", "Stub", stub.base_url, [stub.model]),),
                trusted_endpoints=True,  # the operator's stub LLM on loopback
            )
            if compare_bounds:
                figures = self._bounds_cost(spec, Path(folder), iterations)
            else:
                figures = self._run(LocalRuntime(), spec, iterations)
                figures.update(self._sandbox_cost(spec, Path(folder), iterations))
        figures["iterations"] = iterations
        if json:
            self.stdout.write(_dumps(figures))
        elif compare_bounds:
            self._print(figures, rows=BOUNDS_ROWS)
        else:
            self._print(figures)

    def _run(self, runtime: LocalRuntime, spec: ServerSpec, n: int) -> dict:
        figures: dict = {}
        started = time.perf_counter()
        state = runtime.start(spec)
        try:
            runtime.wait_healthy(state, spec.password)
            figures["start_to_healthy_ms"] = _ms(time.perf_counter() - started)
            time.sleep(1)  # let start-up work settle before reading memory
            figures["rss_healthy_mb"] = _rss_mb(state.pid)
            figures.update(self._injection(runtime, state, spec.password, n))
            figures.update(self._prompts(runtime, state, spec.password, n))
            time.sleep(1)
            figures["rss_after_prompts_mb"] = _rss_mb(state.pid)
        finally:
            figures["stop_ms"] = _ms(_timed(lambda: runtime.stop(state)))
        return figures

    def _sandbox_cost(self, template: ServerSpec, folder: Path, n: int) -> dict:
        """Spawn to healthy, sandboxed vs plain, started alternately (n each, fresh
        folders), and the sandbox's processes' memory once healthy."""
        runtime = LocalRuntime()
        times: dict[str, list[float]] = {"on": [], "off": []}
        helpers_mb: list[float] = []
        for index in range(n):
            for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                spec = dataclasses.replace(
                    template, name=f"sbx-{mode}-{index}", data_dir=folder / f"sbx-{mode}-{index}"
                )
                with override_settings(DOCE_SANDBOX=mode):
                    started = time.perf_counter()
                    state = runtime.start(spec)
                try:
                    runtime.wait_healthy(state, spec.password)
                    times[mode].append(time.perf_counter() - started)
                    if mode == "on":
                        helpers_mb.append(_helpers_rss_mb(state.pid))
                finally:
                    runtime.remove(state)
        return {
            "sandboxed_start_to_healthy_ms": _median_ms(times["on"]),
            "plain_start_to_healthy_ms": _median_ms(times["off"]),
            "sandbox_start_cost_ms": round(_median_ms(times["on"]) - _median_ms(times["off"]), 2),
            "sandbox_memory_mb": round(statistics.median(helpers_mb), 1),
        }

    def _bounds_cost(self, template: ServerSpec, folder: Path, n: int) -> dict:
        """Spawn to healthy and the memory of the whole server tree once healthy, of
        sandboxed servers with their bounds (cgroups, rlimits, the disk watch) and
        without, started alternately (n each, fresh folders)."""
        runtime = LocalRuntime()
        times: dict[str, list[float]] = {"on": [], "off": []}
        memory: dict[str, list[float]] = {"on": [], "off": []}
        for index in range(n):
            for mode in ("on", "off") if index % 2 == 0 else ("off", "on"):
                spec = dataclasses.replace(
                    template, name=f"bnd-{mode}-{index}", data_dir=folder / f"bnd-{mode}-{index}"
                )
                unbounded = mock.patch.object(sandbox_plan, "bounds", lambda layout: None)
                with (
                    override_settings(DOCE_SANDBOX="on"),
                    unbounded if mode == "off" else contextlib.nullcontext(),
                ):
                    started = time.perf_counter()
                    state = runtime.start(spec)
                try:
                    runtime.wait_healthy(state, spec.password)
                    times[mode].append(time.perf_counter() - started)
                    time.sleep(1)  # let start-up work settle before reading memory
                    memory[mode].append(_rss_mb(state.pid))
                finally:
                    runtime.remove(state)
        return {
            "bounded_start_to_healthy_ms": _median_ms(times["on"]),
            "unbounded_start_to_healthy_ms": _median_ms(times["off"]),
            "bounds_start_cost_ms": round(_median_ms(times["on"]) - _median_ms(times["off"]), 2),
            "bounded_server_rss_mb": round(statistics.median(memory["on"]), 1),
            "unbounded_server_rss_mb": round(statistics.median(memory["off"]), 1),
            "bounds_memory_mb": round(
                statistics.median(memory["on"]) - statistics.median(memory["off"]), 1
            ),
        }

    def _injection(self, runtime: LocalRuntime, state: RuntimeState, password: str, n: int):
        """PUT /auth right after health, before any directory request: applies at once.

        OpenCode's own cost is a bare ``http.client`` request with a prepared body on a
        new connection (as doce opens one per injection); doce's path builds its client
        from the stored state, serializes, maps errors. Interleaved, so both see the same
        server conditions; at least 30 samples, the figures are a few ms apart.
        """
        credential = ApiKeyCredential("sk-bench-0123456789abcdef")
        prepared = _dumps(credential.to_json()).encode()
        token = base64.b64encode(f"opencode:{password}".encode()).decode()
        headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}

        def bare_put() -> None:
            connection = http.client.HTTPConnection("127.0.0.1", state.port, timeout=10)
            try:
                connection.request("PUT", "/auth/stub", body=prepared, headers=headers)
                connection.getresponse().read()
            finally:
                connection.close()

        def through_doce() -> None:
            with runtime.client(state, password) as client:
                client.set_auth("stub", credential)

        bare, doce = [], []
        for _ in range(max(n, 30)):
            bare.append(_timed(bare_put))
            doce.append(_timed(through_doce))
        return {
            "put_auth_opencode_ms": _median_ms(bare),
            "inject_through_doce_ms": _median_ms(doce),
            "inject_doce_overhead_ms": round(_median_ms(doce) - _median_ms(bare), 2),
            "inject_doce_overhead_no_network_ms": self._overhead_without_server(password, n),
        }

    @staticmethod
    def _overhead_without_server(password: str, n: int) -> float:
        """doce's own cost of a rotation (client, PUT /auth, dispose) with a transport
        that answers at once: no OpenCode time in it at all."""
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json=True))
        credential = ApiKeyCredential("sk-bench-0123456789abcdef")
        samples = []
        for _ in range(max(n, 50)):

            def rotate() -> None:
                with OpenCodeClient(
                    "http://127.0.0.1:1", password, directory="/w", transport=transport
                ) as client:
                    client.set_auth("stub", credential)
                    client.dispose()

            samples.append(_timed(rotate))
        return _median_ms(samples)

    def _prompts(self, runtime: LocalRuntime, state: RuntimeState, password: str, n: int):
        with runtime.client(state, password) as client:
            session = {}
            first_session = _timed(lambda: session.update(client.session_create()))
            first_prompt = _timed(lambda: client.prompt(session["id"], "hi"))
            warm = [_timed(lambda: client.prompt(session["id"], "hi")) for _ in range(n)]
            dispose, after_dispose = [], []
            for _ in range(n):
                dispose.append(_timed(client.dispose))
                after_dispose.append(_timed(lambda: client.prompt(session["id"], "hi")))
        return {
            "first_session_create_ms": _ms(first_session),  # builds the instance
            "first_prompt_ms": _ms(first_prompt),
            "warm_prompt_ms": _median_ms(warm),
            "dispose_opencode_ms": _median_ms(dispose),
            "prompt_after_dispose_ms": _median_ms(after_dispose),
            "dispose_adds_to_next_prompt_ms": round(
                _median_ms(after_dispose) - _median_ms(warm), 2
            ),
        }

    def _print(self, figures: dict, rows: list | None = None) -> None:
        rows = rows or [
            ("start to healthy", "start_to_healthy_ms", "ms"),
            ("PUT /auth, OpenCode's own (bare http.client)", "put_auth_opencode_ms", "ms"),
            ("PUT /auth through doce's client", "inject_through_doce_ms", "ms"),
            ("  doce's overhead on top", "inject_doce_overhead_ms", "ms"),
            (
                "  doce's overhead, no network (client+PUT+dispose)",
                "inject_doce_overhead_no_network_ms",
                "ms",
            ),
            ("first session (builds the instance)", "first_session_create_ms", "ms"),
            ("first prompt round trip (stub LLM)", "first_prompt_ms", "ms"),
            ("warm prompt round trip", "warm_prompt_ms", "ms"),
            ("POST /instance/dispose, OpenCode's own", "dispose_opencode_ms", "ms"),
            ("prompt right after a dispose", "prompt_after_dispose_ms", "ms"),
            ("  cost a dispose adds to the next prompt", "dispose_adds_to_next_prompt_ms", "ms"),
            ("resident memory, idle after health", "rss_healthy_mb", "MB"),
            ("resident memory, after prompts", "rss_after_prompts_mb", "MB"),
            ("stop", "stop_ms", "ms"),
            ("sandboxed: start to healthy", "sandboxed_start_to_healthy_ms", "ms"),
            ("unsandboxed: start to healthy", "plain_start_to_healthy_ms", "ms"),
            ("  the sandbox's start-up cost", "sandbox_start_cost_ms", "ms"),
            ("  the sandbox's memory (supervisor, bwrap, pasta)", "sandbox_memory_mb", "MB"),
        ]
        self.stdout.write(f"OpenCode benchmark (medians of {figures['iterations']} samples)")
        for label, key, unit in rows:
            self.stdout.write(f"  {label:<52} {figures[key]:>10} {unit}")


BOUNDS_ROWS = [
    ("bounded: start to healthy", "bounded_start_to_healthy_ms", "ms"),
    ("unbounded: start to healthy", "unbounded_start_to_healthy_ms", "ms"),
    ("  the bounds' start-up cost", "bounds_start_cost_ms", "ms"),
    ("bounded: server tree's resident memory", "bounded_server_rss_mb", "MB"),
    ("unbounded: server tree's resident memory", "unbounded_server_rss_mb", "MB"),
    ("  the bounds' memory", "bounds_memory_mb", "MB"),
]


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
