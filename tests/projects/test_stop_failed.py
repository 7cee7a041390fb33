"""Housekeeping stops the servers that failed projects left running, once, and leaves
projects that are starting or have work in progress alone."""

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from doce.opencode.runtimes import RuntimeFailure, RuntimeState, RuntimeStatus
from projects import services as project_services
from projects import tasks
from projects.jobs import JobType
from projects.models import Project
from projects.reconcile import projects_stop_failed, projects_stop_idle
from queue_jobs.models import Job, JobState

pytestmark = pytest.mark.django_db

FAILED_MESSAGE = "The project's server did not come up: OpenCode did not become healthy"


class FakeRuntime:
    """Every server is alive until stopped; records the pids it is asked to stop."""

    name = "local"

    def __init__(self):
        self.stopped: list[int] = []
        self.refuse: set[int] = set()

    def status(self, state: RuntimeState) -> RuntimeStatus:
        return RuntimeStatus.RUNNING if state.active else RuntimeStatus.STOPPED

    def stop(self, state: RuntimeState) -> RuntimeState:
        if state.pid in self.refuse:
            raise RuntimeFailure("docker compose down failed")
        self.stopped.append(state.pid)
        return replace(state, active=False, pid=None)


@pytest.fixture
def runtime(monkeypatch):
    fake = FakeRuntime()
    monkeypatch.setattr(project_services, "project_runtime", lambda project: fake)
    return fake


def _live(pid: int) -> dict:
    return RuntimeState(
        runtime="local", data_dir="/nonexistent", port=4096, directory="/w", pid=pid
    ).to_dict()


def _project(owner, *, status, pid=None, **fields) -> Project:
    return Project.objects.create(
        owner=owner,
        name=f"project {pid}",
        prompt="p",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        status=status,
        runtime="local",
        runtime_state=_live(pid) if pid else {},
        **fields,
    )


def _failed(owner, pid, **fields) -> Project:
    return _project(
        owner,
        status=Project.Status.ERROR,
        pid=pid,
        error_kind=Project.ErrorKind.RUNTIME,
        error_message=FAILED_MESSAGE,
        provider_credentials_set=True,
        **fields,
    )


def test_a_failed_projects_server_is_stopped_and_its_error_kept(alice, runtime):
    project = _failed(alice, 101)
    assert projects_stop_failed() == 1
    assert runtime.stopped == [101]
    project.refresh_from_db()
    assert (project.status, project.error_kind, project.error_message) == (
        Project.Status.ERROR,
        Project.ErrorKind.RUNTIME,
        FAILED_MESSAGE,
    )
    assert project.runtime_state["active"] is False
    assert not project.provider_credentials_set
    assert not project.jobs.exists()
    assert projects_stop_failed() == 0  # once
    assert runtime.stopped == [101]


def test_projects_starting_running_or_with_work_in_progress_are_left_alone(alice, runtime):
    _project(alice, status=Project.Status.STARTING, pid=201)
    _project(alice, status=Project.Status.RUNNING, pid=202)
    _project(alice, status=Project.Status.STOPPING, pid=203)
    for pid, state in ((204, JobState.QUEUED), (205, JobState.RUNNING), (206, JobState.RETRYING)):
        Job.objects.create(subject=_failed(alice, pid), type=JobType.RUNTIME_UP, state=state)
    done = _failed(alice, 207)
    Job.objects.create(subject=done, type=JobType.RUNTIME_UP, state=JobState.FAILED)
    _failed(alice, None)  # never started
    stopped_on_purpose = _failed(alice, 208)
    Project.objects.filter(pk=stopped_on_purpose.pk).update(
        runtime_state=_live(208) | {"active": False}
    )

    assert projects_stop_failed() == 1
    assert runtime.stopped == [207]


def test_a_server_that_will_not_stop_does_not_keep_the_others_up(alice, runtime):
    stubborn, other = _failed(alice, 301), _failed(alice, 302)
    runtime.refuse.add(301)
    assert projects_stop_failed() == 1
    assert runtime.stopped == [302]
    stubborn.refresh_from_db()
    assert stubborn.runtime_state["active"] is True  # tried again next time
    runtime.refuse.clear()
    assert projects_stop_failed() == 1
    assert runtime.stopped == [302, 301]
    other.refresh_from_db()
    assert other.status == Project.Status.ERROR


def test_idle_stop_leaves_failed_projects_to_the_failed_stop(alice, runtime, settings):
    settings.DOCE_PROJECT_IDLE_MINUTES = 30
    long_ago = timezone.now() - timedelta(hours=5)
    failed = _failed(alice, 401, last_activity_at=long_ago)
    idle = _project(alice, status=Project.Status.RUNNING, pid=402, last_activity_at=long_ago)

    assert projects_stop_idle() == 1
    assert not failed.jobs.exists()
    assert idle.jobs.get().type == JobType.RUNTIME_DOWN


def test_the_periodic_task_stops_each_server_once(alice, runtime, settings):
    settings.DOCE_PROJECT_IDLE_MINUTES = 30
    long_ago = timezone.now() - timedelta(hours=5)
    failed = _failed(alice, 501, last_activity_at=long_ago)
    idle = _project(alice, status=Project.Status.RUNNING, pid=502, last_activity_at=long_ago)

    tasks.reconcile()
    tasks.reconcile()

    assert runtime.stopped == [501]  # the idle one is stopped by its runtime.down job
    failed.refresh_from_db()
    idle.refresh_from_db()
    assert (failed.status, failed.error_message) == (Project.Status.ERROR, FAILED_MESSAGE)
    assert not failed.jobs.exists()
    assert idle.status == Project.Status.STOPPING
    assert list(idle.jobs.values_list("type", flat=True)) == [JobType.RUNTIME_DOWN]
