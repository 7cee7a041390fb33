from datetime import timedelta

import pytest
from django.utils import timezone

from doce.opencode.runtimes import RuntimeState
from projects.jobs import JobType
from projects.models import Project
from projects.reconcile import CRASHED_MESSAGE, projects_reconcile, projects_stop_idle
from queue_jobs.models import Job, JobState

pytestmark = pytest.mark.django_db


def _dead_server_state(tmp_path) -> dict:
    # A pid that no process has (pid_max is far below this): the server is gone.
    return RuntimeState(
        runtime="local",
        data_dir=str(tmp_path),
        port=1,
        directory=str(tmp_path),
        active=True,
        pid=2**22 + 12345,
        process_started_at=1.0,
    ).to_dict()


def test_a_running_project_whose_server_died_is_marked(project, tmp_path):
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.RUNNING, runtime="local", runtime_state=_dead_server_state(tmp_path)
    )
    assert projects_reconcile() == {"crashed": 1}
    project.refresh_from_db()
    assert (project.status, project.error_kind) == (Project.Status.ERROR, "runtime")
    assert project.error_message == CRASHED_MESSAGE
    assert projects_reconcile() == {"crashed": 0}  # once


def test_a_project_stopped_on_purpose_is_not_crashed(project, tmp_path):
    state = _dead_server_state(tmp_path) | {"active": False}
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.RUNNING, runtime="local", runtime_state=state
    )
    assert projects_reconcile() == {"crashed": 0}


def test_projects_with_work_in_progress_are_left_to_the_pipeline(project, tmp_path):
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.RUNNING, runtime="local", runtime_state=_dead_server_state(tmp_path)
    )
    Job.objects.create(subject=project, type=JobType.RUNTIME_UP, state=JobState.RUNNING)
    assert projects_reconcile() == {"crashed": 0}


def test_idle_projects_are_stopped_busy_ones_are_not(project, alice, settings):
    settings.DOCE_PROJECT_IDLE_MINUTES = 30
    recent = Project.objects.create(
        owner=alice,
        name="recent",
        prompt="p",
        current_model_provider_id="stub",
        current_model_id="m",
        status=Project.Status.RUNNING,
        last_activity_at=timezone.now(),
    )
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.RUNNING, last_activity_at=timezone.now() - timedelta(minutes=31)
    )
    assert projects_stop_idle() == 1
    project.refresh_from_db()
    recent.refresh_from_db()
    assert project.status == Project.Status.STOPPING
    assert project.jobs.get().type == JobType.RUNTIME_DOWN
    assert recent.status == Project.Status.RUNNING
