"""Helpers of the integration tests (real processes): the stub LLM fixture, waiting
for an observable condition with a deadline, and a report of a pipeline for failures."""

from __future__ import annotations

import time

import pytest

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
