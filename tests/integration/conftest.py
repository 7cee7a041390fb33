"""Helpers of the integration tests (real processes): the stub LLM fixture, waiting
for an observable condition with a deadline, and a report of a pipeline for failures."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from doce.stub_llm import StubLLM
from projects import services as project_services
from projects.models import Project
from queue_jobs.models import Job

FIRST_KEY = "sk-stub-first-0123456789abcdef"
REPLY = "Your bakery site is ready."


def wait_for(predicate, *, timeout: float = 90, what: str = "condition", explain=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{explain()}" if explain else ""))


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


@pytest.fixture
def cleanup_projects():
    yield
    for project in Project.objects.all():
        project_services.server_stop(project=project)


def settled(project: Project) -> Project | None:
    project.refresh_from_db()
    return project if project.status in (Project.Status.RUNNING, Project.Status.ERROR) else None


def _server_pid(state) -> int:
    """The OpenCode process inside a sandbox (a descendant of the supervisor)."""
    supervisor = psutil.Process(state.pid)
    for child in supervisor.children(recursive=True):
        if child.name() == "opencode" or "serve" in child.cmdline()[1:2]:
            return child.pid
    raise AssertionError(f"no OpenCode process under {state.pid}")


def assert_sealed(state, *, own: list[Path]) -> None:
    """Seen from the server process itself: its own PID and network namespaces, none
    of doce's files, its own folders."""
    pid = _server_pid(state)
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
