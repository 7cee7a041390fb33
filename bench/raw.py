"""The raw side of ``manage.py bench_pipeline``: the same work doce does, done by hand on
the same binary, sandbox setting and stub LLM, so doce's figures have a floor measured
in the same run. Plain HTTP and none of doce's code but the local runtime's spawn.

- cold: start a server, poll health, ``PUT /auth``, ``POST /session``, ``prompt_async``,
  until the stub LLM receives the request;
- warm: on a server started ahead of time with a neutral ``opencode.json`` and warmed
  the way doce's pool warms its servers, write the project's ``opencode.json``, ``PUT
  /auth``, dispose, ``POST /session``, ``prompt_async``, until the stub receives it;
- key edit: ``PUT /auth``, dispose, ``prompt_async`` on a running server.

Sessions get a title, as doce's do: OpenCode then asks the LLM for none.

Also the small helpers both sides share: summaries, waiting with a deadline, finding
the agent's request at the stub.
"""

from __future__ import annotations

import json
import math
import secrets
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
from django.core.management.base import CommandError

from bench.stub_llm import StubLLM
from doce.opencode.runtimes import CustomProvider, Runtime, RuntimeState, ServerSpec
from doce.opencode.runtimes.config import render_opencode_config, write_private
from projects.pool import PLACEHOLDER_MODEL, WARMUP_MODEL, WARMUP_PROVIDER

POLL = 0.01


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "p95": round(p95(values), 3),
    }


def ratios(doce: list[float], raw: list[float]) -> dict:
    if not doce or not raw:
        return {}
    return {
        "ratio_median": round(statistics.median(doce) / statistics.median(raw), 2),
        "ratio_p95": round(p95(doce) / p95(raw), 2),
    }


def paired(doce: list[float], raw: list[float]) -> dict:
    """doce − raw over samples taken side by side (the same round, one right after the
    other), in ms: its median with a 95 % confidence interval (or, with fewer than 6
    pairs, their range). This machine's speed
    drifts by more than doce's own cost within a run; a difference of neighbours
    cancels the drift that a ratio of two medians keeps."""
    differences = [(d - r) * 1000 for d, r in zip(doce, raw, strict=True)]
    if not differences:
        return {"n": 0}
    figures = {"n": len(differences), "median_ms": round(statistics.median(differences))}
    interval = median_interval(differences)
    if interval is None:  # fewer than 6 pairs: their range, which is no 95 % interval
        figures["range_ms"] = [round(min(differences)), round(max(differences))]
    else:
        figures["ci95_ms"] = [round(interval[0]), round(interval[1])]
    return figures


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median (order statistics and the
    binomial distribution): the k-th smallest and k-th largest values, k as large as
    the confidence allows. None when there are too few values for the confidence (for
    95 %, fewer than 6: even their whole range would cover the median less often)."""
    ordered = sorted(values)
    n = len(ordered)
    tail = (1 - confidence) / 2
    k, below = 0, 0.0  # below: P(fewer than k+1 of n values under the median)
    while k < n // 2:
        below += math.comb(n, k) / 2**n
        if below > tail:
            break
        k += 1
    if k == 0:
        return None
    return ordered[k - 1], ordered[n - k]


def wait_until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CommandError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


def arrival(stub: StubLLM, marker: str):
    """The stub's record of the agent's request (the one offering tools: not the title
    request) whose conversation holds ``marker``, or None."""
    for request in stub.completions():
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("tools") and marker in _user_text(body):
            return request
    return None


def _user_text(body: dict) -> str:
    """The user's messages of a request (small), not the whole body: the system prompt
    and tools are tens of KB, and re-reading them all every poll would take a core from
    the servers being measured."""
    return "\n".join(
        content if isinstance(content, str) else json.dumps(content)
        for message in body.get("messages", [])
        if message.get("role") == "user"
        for content in [message.get("content")]
    )


def answered(messages: list[dict]) -> bool:
    """The last message is a finished reply."""
    if not messages:
        return False
    info = messages[-1].get("info", {})
    return info.get("role") == "assistant" and bool(info.get("time", {}).get("completed"))


def new_key() -> str:
    return "sk-bench-" + secrets.token_hex(16)


@dataclass
class RawServer:
    """A server driven by hand: plain HTTP, none of doce's code but the spawn."""

    spec: ServerSpec
    state: RuntimeState
    http: httpx.Client
    session: str = ""

    def params(self) -> dict:
        return {"directory": self.state.directory} if self.state.directory else {}

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, params=self.params(), **kwargs)
        response.raise_for_status()
        return response

    def prompt(self, text: str, model: str) -> None:
        body = {
            "parts": [{"type": "text", "text": text}],
            "model": {"providerID": "stub", "modelID": model},
        }
        self.call("POST", f"/session/{self.session}/prompt_async", json=body)

    def answered(self) -> bool:
        return answered(self.call("GET", f"/session/{self.session}/message").json())


class RawSide:
    """Raw servers in ``folder`` on ``runtime``, talking to ``stub``; every server it
    starts is listed in ``servers`` so the caller can remove them."""

    def __init__(self, runtime: Runtime, folder: Path, stub: StubLLM, timeout: float):
        self.runtime, self.folder, self.stub, self.timeout = runtime, folder, stub, timeout
        self.servers: list[RawServer] = []
        self.healthy_s: list[float] = []  # cold: spawn until health answered, per server

    def stub_spec(self, name: str, password: str) -> ServerSpec:
        return ServerSpec(
            name=name,
            data_dir=self.folder / name,
            model=f"stub/{self.stub.model}",
            password=password,
            custom_providers=(
                CustomProvider("stub", "Stub", self.stub.base_url, [self.stub.model]),
            ),
            trusted_endpoints=True,  # the operator's stub LLM on loopback
        )

    def spawn(self, spec: ServerSpec) -> RawServer:
        state = self.runtime.start(spec)
        server = RawServer(
            spec,
            state,
            httpx.Client(
                base_url=f"http://127.0.0.1:{state.port}",
                auth=("opencode", spec.password),
                timeout=30,
                trust_env=False,
            ),
        )
        self.servers.append(server)
        return server

    def wait_healthy(self, server: RawServer, started: float) -> None:
        deadline = started + self.timeout
        while True:
            try:
                if server.http.get("/global/health", timeout=0.2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"raw server {server.spec.name} never became healthy")
            time.sleep(POLL)

    def cold(self, marker: str) -> tuple[float, float, RawServer]:
        """Spawn to the prompt at the LLM, by hand; also the part of it after OpenCode
        accepted the prompt."""
        started = time.monotonic()
        server = self.spawn(self.stub_spec(marker, secrets.token_urlsafe(24)))
        self.wait_healthy(server, started)
        self.healthy_s.append(time.monotonic() - started)
        server.call("PUT", "/auth/stub", json={"type": "api", "key": new_key()})
        server.session = server.call("POST", "/session", json={"title": marker}).json()["id"]
        server.prompt(f"Build site {marker}", self.stub.model)
        accepted = time.monotonic()
        request = wait_until(
            lambda: arrival(self.stub, marker), timeout=self.timeout, what=f"{marker} at the LLM"
        )
        return request.at - started, request.at - accepted, server

    def prestart(self, marker: str) -> RawServer:
        """A server started ahead of time with a neutral opencode.json (no provider of
        anyone's), healthy and warmed as the pool warms its servers: what a pooled
        server is."""
        spec = ServerSpec(
            name=marker,
            data_dir=self.folder / marker,
            model=PLACEHOLDER_MODEL,
            password=secrets.token_urlsafe(24),
        )
        started = time.monotonic()
        server = self.spawn(spec)
        self.wait_healthy(server, started)
        self.warm_up(server)
        return server

    def warm_up(self, server: RawServer) -> None:
        """What projects.pool does to a new server, by hand: a prompt in a throw-away
        session to a model at a closed port, until OpenCode has tried to reach it."""
        spec = replace(server.spec, model=WARMUP_MODEL, custom_providers=(WARMUP_PROVIDER,))
        path = server.spec.layout.workspace / "opencode.json"
        write_private(path, json.dumps(render_opencode_config(spec), indent=2) + "\n")
        session = server.call("POST", "/session", json={"title": "warm-up"}).json()["id"]
        provider, model = WARMUP_MODEL.split("/")
        body = {
            "parts": [{"type": "text", "text": "warm-up"}],
            "model": {"providerID": provider, "modelID": model},
        }
        server.call("POST", f"/session/{session}/prompt_async", json=body)

        def tried() -> bool:
            status = server.call("GET", "/session/status").json().get(session) or {}
            if status.get("type") == "retry":
                return True
            messages = server.call("GET", f"/session/{session}/message").json()
            info = messages[-1].get("info", {}) if messages else {}
            return info.get("role") == "assistant" and bool(info.get("error"))

        wait_until(tried, timeout=self.timeout, what=f"{server.spec.name}'s warm-up")
        server.call("POST", f"/session/{session}/abort")
        server.call("DELETE", f"/session/{session}")

    def warm(self, server: RawServer, marker: str) -> tuple[float, float]:
        """On a pre-started server: the project's opencode.json, ``PUT /auth``, dispose,
        session, prompt, until the LLM has it; also the part after the prompt."""
        started = time.monotonic()
        config = render_opencode_config(self.stub_spec(server.spec.name, server.spec.password))
        path = server.spec.layout.workspace / "opencode.json"
        write_private(path, json.dumps(config, indent=2) + "\n")
        server.call("PUT", "/auth/stub", json={"type": "api", "key": new_key()})
        server.call("POST", "/instance/dispose")
        server.session = server.call("POST", "/session", json={"title": marker}).json()["id"]
        server.prompt(f"Build site {marker}", self.stub.model)
        accepted = time.monotonic()
        request = wait_until(
            lambda: arrival(self.stub, marker), timeout=self.timeout, what=f"{marker} at the LLM"
        )
        return request.at - started, request.at - accepted

    def key_edit(self, server: RawServer, key: str, marker: str) -> None:
        server.call("PUT", "/auth/stub", json={"type": "api", "key": key})
        server.call("POST", "/instance/dispose")
        server.prompt(f"Change {marker}", self.stub.model)

    def remove(self, server: RawServer) -> None:
        if server in self.servers:
            self.servers.remove(server)
        server.http.close()
        self.runtime.remove(server.state)
