"""A server that dies is marked at once by the process that spawned it (the exit
listener, in the thread that collected the exit status), with the reason a bound gave,
as the periodic reconcile would mark it."""

from __future__ import annotations

import threading

import pytest

from doce.opencode.runtimes import RuntimeState, exits, sandbox_bounds
from projects.jobs import JobType
from projects.models import Project
from projects.reconcile import CRASHED_MESSAGE, project_server_exited, projects_reconcile
from queue_jobs.models import Job, JobState

# The listener runs in a thread of its own, on a connection of its own.
pytestmark = pytest.mark.django_db(transaction=True)

DEAD_PID = 2**22 + 4321  # no process has it: the server is gone


def _running(project, tmp_path, pid: int = DEAD_PID) -> dict:
    state = RuntimeState(
        runtime="local",
        data_dir=str(tmp_path),
        port=1,
        directory=str(tmp_path),
        active=True,
        pid=pid,
        process_started_at=1.0,
    ).to_dict()
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.RUNNING, runtime="local", runtime_state=state
    )
    return state


def _exit(tmp_path, returncode: int, pid: int = DEAD_PID) -> exits.ServerExit:
    return exits.ServerExit(runtime="local", pid=pid, data_dir=str(tmp_path), returncode=returncode)


def _deliver(event: exits.ServerExit) -> None:
    """As local.py's exit collector does: in a thread of its own."""
    thread = threading.Thread(target=exits.server_exited, args=(event,))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()


def test_the_projects_app_listens_for_exits():
    assert project_server_exited in exits._LISTENERS


def test_a_server_stopped_by_its_memory_bound_says_so_at_once(project, tmp_path):
    _running(project, tmp_path)
    sandbox_bounds.exit_record_write(
        str(tmp_path / sandbox_bounds.EXIT_FILE),
        bound="memory",
        message="it reached its memory bound of 2 GiB",
    )
    _deliver(_exit(tmp_path, sandbox_bounds.EXIT_CODES["memory"]))
    project.refresh_from_db()
    assert (project.status, project.error_kind) == (Project.Status.ERROR, "runtime")
    assert project.error_message == (
        "The project's server was stopped: it reached its memory bound of 2 GiB. "
        "Start it again to continue."
    )


def test_a_crash_without_a_bound_gets_the_usual_message(project, tmp_path):
    _running(project, tmp_path)
    _deliver(_exit(tmp_path, 1))
    project.refresh_from_db()
    assert project.error_message == CRASHED_MESSAGE


def test_reconcile_gives_the_same_reason_when_no_one_was_listening(project, tmp_path):
    _running(project, tmp_path)
    sandbox_bounds.exit_record_write(
        str(tmp_path / sandbox_bounds.EXIT_FILE), bound="disk", message="its files reached it"
    )
    assert projects_reconcile() == {"crashed": 1}
    project.refresh_from_db()
    assert "stopped: its files reached it." in project.error_message


@pytest.mark.parametrize("returncode", [0, 143, -15, -9])
def test_a_stop_on_purpose_is_no_crash(project, tmp_path, returncode):
    _running(project, tmp_path)
    _deliver(_exit(tmp_path, returncode))
    project.refresh_from_db()
    assert project.status == Project.Status.RUNNING


def test_another_server_of_the_project_is_not_taken_for_it(project, tmp_path):
    _running(project, tmp_path, pid=DEAD_PID + 1)  # the project runs a newer server
    _deliver(_exit(tmp_path, 1))
    project.refresh_from_db()
    assert project.status == Project.Status.RUNNING


def test_a_project_with_work_in_progress_is_left_to_its_pipeline(project, tmp_path):
    _running(project, tmp_path)
    Job.objects.create(subject=project, type=JobType.RUNTIME_UP, state=JobState.RUNNING)
    _deliver(_exit(tmp_path, 1))
    project.refresh_from_db()
    assert project.status == Project.Status.RUNNING
