"""Helpers of the integration tests (real processes): the stub LLM fixture and a stub
connection to it, waiting for an observable condition with a deadline, a report of a
pipeline for failures, a local JSON endpoint (a fake provider's), starting and
following an OAuth sign-in through the pages, and the site preview's server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psutil
import pytest
from django.conf import settings

from bench.stub_llm import StubLLM
from doce.management.commands.rundoce import preview_command
from projects import services as project_services
from projects.models import Project
from providers.models import OAuthFlow, ProviderConnection
from providers.services import connection_create
from queue_jobs.models import Job
from tests.conftest import stop_process_group, subprocess_env, wait_for

FIRST_KEY = "sk-stub-first-0123456789abcdef"
REPLY = "Your bakery site is ready."


@contextmanager
def released(event: threading.Event) -> Iterator[None]:
    """Set ``event`` on the way out, also when the test fails: a stub LLM holding its
    reply's end for it (``hold_last_chunk``) then finishes."""
    try:
        yield
    finally:
        event.set()


def pipeline_report(project: Project, worker=None) -> str:
    """What the jobs, the project and the worker say, for a failure message."""
    project.refresh_from_db()
    lines = [f"project {project.pk}: {project.status} {project.error_message!r}"]
    lines += [
        f"  {job.type}: {job.state} attempts={job.attempts} {job.last_error!r}"
        for job in Job.objects.filter(subject=project).order_by("created_at", "position")
    ]
    log_path = getattr(worker, "log_path", None)
    if log_path is not None:
        lines.append("worker log tail:\n" + log_path.read_text()[-4000:])
    state = project_services.runtime_state(project)
    if state is not None:
        lines.append("opencode log tail:\n" + state.layout.log_tail(30))
    return "\n".join(lines)


@pytest.fixture
def stub():
    with StubLLM(reply=REPLY) as server:
        yield server


def stub_connection(user, stub: StubLLM, *, api_key: str = FIRST_KEY) -> ProviderConnection:
    """``user``'s custom endpoint "stub" (model ``stub-model``) that reaches the stub LLM."""
    return connection_create(
        user=user,
        provider_id="stub",
        name="Stub",
        base_url=stub.base_url,
        models=[stub.model],
        api_key=api_key,
    )


@pytest.fixture
def running_project(alice, stub, celery_worker_process):
    """Alice's project on the stub LLM, started by the real worker, with its first reply;
    ``(project, connection)``. Its server is stopped afterwards."""
    connection = stub_connection(alice, stub)
    project = project_services.project_create(
        owner=alice, prompt="Build a site for my bakery", model="stub/stub-model"
    )
    try:
        wait_for(
            lambda: settled(project),
            what="the pipeline",
            explain=lambda: pipeline_report(project, celery_worker_process),
        )
        assert project.status == Project.Status.RUNNING, pipeline_report(project)
        wait_for(stub.completions, what="the initial prompt")
        wait_for(lambda: len(replies(project)) >= 1, what="the first reply")
        yield project, connection
    finally:
        project_services.server_stop(project=project)


def replies(project: Project) -> list[dict]:
    """The project's finished replies, as OpenCode has them (their ``info``)."""
    with project_services.project_client(project) as client:
        return [
            m["info"]
            for m in client.messages(project.bootstrap_session_id)
            if m["info"]["role"] == "assistant" and m["info"].get("time", {}).get("completed")
        ]


@pytest.fixture
def cleanup_projects():
    yield
    for project in Project.objects.all():
        project_services.server_stop(project=project)


def settled(project: Project) -> Project | None:
    project.refresh_from_db()
    return project if project.status in (Project.Status.RUNNING, Project.Status.ERROR) else None


def project_settled(owner, prompt: str, worker, *, model: str = "stub/stub-model") -> Project:
    """A new project of ``owner``'s, once its pipeline has run (running, or failed)."""
    project = project_services.project_create(owner=owner, prompt=prompt, model=model)
    wait_for(
        lambda: settled(project),
        what="the pipeline",
        explain=lambda: pipeline_report(project, worker),
    )
    return project


def project_running(owner, prompt: str, worker, *, model: str = "stub/stub-model") -> Project:
    """``project_settled``, and it must be running."""
    project = project_settled(owner, prompt, worker, model=model)
    assert project.status == Project.Status.RUNNING, pipeline_report(project, worker)
    return project


def server_pid(state) -> int:
    """The OpenCode process inside a sandbox (a descendant of the supervisor)."""
    supervisor = psutil.Process(state.pid)
    for child in supervisor.children(recursive=True):
        if child.name() == "opencode" or "serve" in child.cmdline()[1:2]:
            return child.pid
    raise AssertionError(f"no OpenCode process under {state.pid}")


def assert_sealed(state, *, own: list[Path]) -> None:
    """Seen from the server process itself: its own PID and network namespaces, none
    of doce's files, its own folders."""
    pid = server_pid(state)
    me = Path("/proc/self/ns")
    theirs = Path(f"/proc/{pid}/ns")
    for kind in ("pid", "net", "mnt", "user"):
        assert os.readlink(theirs / kind) != os.readlink(me / kind), kind
    root = Path(f"/proc/{pid}/root")
    data_dir = Path(settings.DOCE_DATA_DIR)
    for hidden in (settings.BASE_DIR / "manage.py", data_dir / "broker", data_dir / "projects"):
        assert not (root / str(hidden).lstrip("/")).exists(), hidden
    for path in own:
        assert (root / str(path).lstrip("/")).exists(), path
    status = Path(f"/proc/{pid}/status").read_text()
    assert "NoNewPrivs:\t1" in status
    assert "CapEff:\t0000000000000000" in status
    environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    for name in ("DOCE_ENCRYPTION_KEYS", "SECRET_KEY", "DATABASE_URL", "CELERY_BROKER_URL"):
        assert f"{name}=" not in environ, name


@contextmanager
def json_endpoint(answer: Callable[[str, dict], tuple[int, dict]], path: str) -> Iterator[str]:
    """A local HTTP endpoint (a fake provider's) on 127.0.0.1, in a thread: every GET and
    POST is answered with JSON by ``answer(method, posted JSON or {})``, which returns
    ``(status, body)``. Yields its URL, ``http://127.0.0.1:<port><path>``."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _answer(self, method: str) -> None:
            length = int(self.headers.get("content-length") or 0)
            status, body = answer(method, json.loads(self.rfile.read(length) or b"{}"))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            self._answer("GET")

        def do_POST(self):  # noqa: N802
            self._answer("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{path}"
    finally:
        server.shutdown()
        server.server_close()


def start_flow(client, provider_id: str, data: dict) -> str:
    """Start a sign-in from its page; the new flow's id."""
    response = client.post(f"/settings/providers/{provider_id}/oauth/", data)
    assert response.status_code == 302, response.content.decode()[-2000:]
    match = re.fullmatch(r"/settings/providers/oauth/([0-9a-f-]+)/", response["Location"])
    assert match, response["Location"]
    return match.group(1)


def wait_for_flow(flow_id, states, *, worker, timeout: float = 90) -> OAuthFlow:
    """The flow once it is in one of ``states``; else the worker's and the flow's server's
    logs in the failure."""

    def arrived() -> OAuthFlow | None:
        flow = OAuthFlow.objects.get(pk=flow_id)
        return flow if flow.state in states else None

    def explain() -> str:
        flow = OAuthFlow.objects.get(pk=flow_id)
        log = Path(worker.log_path).read_text()[-4000:]
        server_log = Path(flow.data_dir or "/nonexistent") / "opencode.log"
        tail = server_log.read_text()[-3000:] if server_log.exists() else ""
        return f"flow stayed {flow.state} ({flow.error_message})\n{log}\n{tail}"

    return wait_for(
        arrived, timeout=timeout, what=f"the sign-in to reach {states}", explain=explain
    )


#: Run with ``python3 -c PROBE LISTING`` inside a sandbox or container, as its agent's
#: tools would: connects to each ``[label, host, port]`` of the JSON ``LISTING`` and
#: prints ``{label: "OPEN" | the errno's name}``.
PROBE = """
import errno, json, socket, sys
found = {}
for label, host, port in json.loads(sys.argv[1]):
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((host, port)); found[label] = "OPEN"
    except Exception as e:
        found[label] = errno.errorcode.get(getattr(e, "errno", None), type(e).__name__)
    finally:
        s.close()
print(json.dumps(found))
"""


def probe_listing(targets: dict[str, tuple[str, int]]) -> str:
    """``PROBE``'s argument for ``{label: (host, port)}``."""
    return json.dumps([[label, host, port] for label, (host, port) in targets.items()])


def local_preview_origin(port: int) -> str:
    """One origin per project on this machine: browsers resolve ``*.localhost`` to it."""
    return f"http://{{token}}.localhost:{port}"


@pytest.fixture
def preview_server(request, tmp_path):
    """The site preview's server as `make run` starts it (uvicorn, projects.preview_asgi)
    on a free port of its own, in a process of its own; yields the port. Parametrized
    indirectly with ``"subdomains"``, it serves one origin per project,
    ``http://{token}.localhost:<port>`` (``local_preview_origin``)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"DOCE_PREVIEW_PORT": str(port)}
    if getattr(request, "param", "path") == "subdomains":
        env["DOCE_PREVIEW_ORIGIN"] = local_preview_origin(port)
    log_path = tmp_path / "preview.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            preview_command(host="127.0.0.1", port=port),
            env=subprocess_env(**env),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,
        )

    def answers() -> bool:
        assert process.poll() is None, log_path.read_text()
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_for(answers, timeout=30, what="the preview server", explain=log_path.read_text)
        yield port
    finally:
        stop_process_group(process)
