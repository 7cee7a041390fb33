"""Measuring the live transcript: from the stub LLM writing a piece of a reply to an SSE
client of doce's ``/projects/<id>/stream/`` receiving it, through a real OpenCode server
and doce's ASGI application served by uvicorn (``manage.py bench_stream``; the
integration and browser tests use the same pieces).

The path measured: stub LLM -> OpenCode (``message.part.delta`` on ``GET /event``) ->
the hub's one upstream subscription -> the viewer's queue -> uvicorn -> the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore

from bench.stub_llm import StubLLM
from doce.opencode import ApiKeyCredential, ModelRef
from doce.opencode.events import abort_response
from projects import services
from projects.models import Project
from projects.recorder import Recorder
from providers.services import connection_create

STUB_KEY_PREFIX = "sk-bench-stream-"


@contextlib.contextmanager
def serve_asgi() -> Iterator[str]:
    """doce's ASGI application on 127.0.0.1 (a free port) in a thread, served by uvicorn
    as ``make run`` serves it; yields the base URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        "doce.asgi:application", lifespan="off", log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="uvicorn", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not server.started:
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def session_cookie(user) -> dict[str, str]:
    """A signed-in session for ``user``, as the login view would make it."""
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[-1]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return {settings.SESSION_COOKIE_NAME: session.session_key}


@contextlib.contextmanager
def running_project(*, owner, stub: StubLLM, data_dir: Path) -> Iterator[Project]:
    """A project of ``owner`` whose server runs with the stub as its model, started
    directly (no pipeline, no worker: what is measured is the stream)."""
    connection_create(
        user=owner,
        provider_id="stub",
        name="Stub",
        base_url=stub.base_url,
        models=[stub.model],
        api_key=STUB_KEY_PREFIX + secrets.token_hex(12),
    )
    project = Project.objects.create(
        owner=owner,
        name="Live transcript",
        prompt="Tell me a story",
        current_model_provider_id="stub",
        current_model_id=stub.model,
        server_password=secrets.token_urlsafe(32),
        data_dir=str(data_dir),
    )
    runtime = services.project_runtime(project)
    state = runtime.start(services.project_spec(project))
    try:
        runtime.wait_healthy(state, str(project.server_password))
        client = runtime.client(state, str(project.server_password))
        with client:
            key = STUB_KEY_PREFIX + secrets.token_hex(12)
            client.set_auth("stub", ApiKeyCredential(key))
            session = client.session_create(title=services.session_title(project))
        project.runtime_state = state.to_dict()
        project.bootstrap_session_id = session["id"]
        project.status = Project.Status.RUNNING
        project.save(update_fields=["runtime_state", "bootstrap_session_id", "status"])
        yield project
    finally:
        services.server_stop(project=project)


def prompt(project: Project, text: str) -> None:
    model = ModelRef(project.current_model_provider_id, project.current_model_id)
    with services.project_client(project) as client:
        client.prompt_async(project.bootstrap_session_id, text, model=model)


@dataclass
class Received:
    name: str
    data: str
    at: float  # time.monotonic()


@dataclass
class SSEClient:
    """Reads doce's event stream in a thread, noting when each event arrived."""

    url: str
    cookies: dict[str, str]
    events: list[Received] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._response: httpx.Response | None = None
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sse-client", daemon=True)

    def __enter__(self) -> SSEClient:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        if self._response is not None:
            with contextlib.suppress(Exception):
                abort_response(self._response)
        self._thread.join(timeout=10)

    def received(self, name: str | None = None) -> list[Received]:
        with self._lock:
            return [e for e in self.events if name is None or e.name == name]

    def _read(self) -> None:
        timeout = httpx.Timeout(10, read=None)
        try:
            with (
                httpx.Client(cookies=self.cookies, timeout=timeout, trust_env=False) as http,
                http.stream("GET", self.url, headers={"accept": "text/event-stream"}) as resp,
            ):
                self._response = resp
                resp.raise_for_status()
                name, data = "message", []
                for line in resp.iter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].removeprefix(" "))
                    elif line == "" and (data or name != "message"):
                        with self._lock:
                            self.events.append(Received(name, "\n".join(data), time.monotonic()))
                        name, data = "message", []
        except BaseException as exc:  # noqa: BLE001 (reported to the caller)
            if not self._stopped.is_set():
                self.error = exc


class RawEvents:
    """OpenCode's own ``/event`` stream read directly (no doce in between), in a thread:
    when each text delta left OpenCode, keyed by (part, offset where it ends)."""

    def __init__(self, project: Project) -> None:
        self._opened = services.project_client(project)
        self._client = self._opened.__enter__()
        self._stream = self._client.events()
        self._lock = threading.Lock()
        self.arrived: dict[tuple[str, int], float] = {}
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._read, name="raw-events", daemon=True)

    def __enter__(self) -> RawEvents:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stream.close()
        self._thread.join(timeout=10)
        self._opened.__exit__(None, None, None)

    def _read(self) -> None:
        lengths: dict[str, int] = {}
        with contextlib.suppress(Exception):
            for event in self._stream:
                now = time.monotonic()
                if event.type == "server.connected":
                    self.connected.set()
                props = event.properties
                if event.type == "message.part.delta" and props.get("field") == "text":
                    part = str(props.get("partID"))
                    lengths[part] = lengths.get(part, 0) + len(str(props.get("delta", "")))
                    with self._lock:
                        self.arrived[(part, lengths[part])] = now

    def at(self, part: str, end: int) -> float | None:
        with self._lock:
            return self.arrived.get((part, end))


def timeline(stub: StubLLM, raw: RawEvents, deltas: list[Received]) -> list[tuple]:
    """For each delta of one reply: (the stub wrote its last piece, OpenCode sent it on
    /event as a direct subscriber saw it, doce's SSE client received it); a time is None
    when it could not be matched."""
    ends, offset = [], 0
    for piece, at in stub.emitted():
        offset += len(piece)
        ends.append((offset, at))
    rows = []
    for delta in deltas:
        body = json.loads(delta.data)
        end = body["start"] + len(body["text"])
        written = next((at for piece_end, at in ends if piece_end >= end), None)
        rows.append((written, raw.at(body["part"], end), delta.at))
    return rows


def wait_until(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median_ms": statistics.median(values) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "max_ms": max(values) * 1000,
    }


class Recording:
    """A recorder (projects.recorder) in a thread of this process, following the project
    it is told to (``follow(pk)``; None: none), and waiting until it does."""

    def __init__(self) -> None:
        self.wanted: set[int] = set()
        self.recorder = None
        self._stop = None
        self._loop = None
        self._thread = threading.Thread(target=self._run, name="bench-recorder", daemon=True)

    def __enter__(self) -> Recording:
        self._thread.start()
        wait_until(lambda: self.recorder is not None, timeout=10, what="the recorder")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)

    def follow(self, project_id: int | None) -> None:
        self.wanted = {project_id} if project_id is not None else set()
        wait_until(
            lambda: set(self.recorder.follows) == self.wanted,
            timeout=10,
            what="the recorder to follow",
        )

    def _run(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.recorder = Recorder(running=lambda: set(self.wanted))
            await self.recorder.run(self._stop)

        asyncio.run(main())
