"""Room for a project's server (projects.capacity): over the owner's bound their least
recently used idle project is stopped and both pages say so; over the global bound, or
with nothing idle to stop, the start waits and its page says how many are ahead."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from doce import capacity
from doce.models import ServerSlot
from doce.opencode.runtimes import RuntimeState
from projects import capacity as project_capacity
from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from projects.reconcile import projects_reconcile
from queue_jobs.engine import StepWait
from queue_jobs.pipeline import pipeline_enqueue

pytestmark = pytest.mark.django_db

KIND = project_services.PROJECT_SERVERS


@pytest.fixture
def bounds(settings):
    settings.DOCE_MAX_SERVERS = 10
    settings.DOCE_MAX_SERVERS_PER_USER = 2
    return settings


def make_project(owner, name, *, running=True, used_minutes_ago=0):
    project = Project.objects.create(
        owner=owner,
        name=name,
        prompt=f"Build {name}",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password="pw-" + "x" * 30,
        status=Project.Status.RUNNING if running else Project.Status.STARTING,
        last_activity_at=timezone.now() - timedelta(minutes=used_minutes_ago),
    )
    if running:
        assert capacity.slot_acquire(kind=KIND, key=str(project.pk), owner_id=owner.pk).granted
    return project


def held():
    return set(ServerSlot.objects.filter(state="held").values_list("key", flat=True))


def test_over_the_users_bound_the_least_recently_used_idle_project_stops(bounds, alice, bob):
    older = make_project(alice, "Bakery", used_minutes_ago=30)
    recent = make_project(alice, "Florist", used_minutes_ago=1)
    bobs = make_project(bob, "Garage", used_minutes_ago=90)  # not alice's to stop
    new = make_project(alice, "Tailor", running=False)

    project_capacity.server_slot_take(new)

    older.refresh_from_db(), recent.refresh_from_db(), new.refresh_from_db()
    assert older.status == Project.Status.STOPPED
    assert recent.status == Project.Status.RUNNING
    assert held() == {str(recent.pk), str(bobs.pk), str(new.pk)}
    assert "Stopped to make room for your project “Tailor”" in older.server_note
    assert "you may run 2 projects at once" in older.server_note
    assert "Your idle project “Bakery” was stopped to make room" in new.server_note


def test_a_project_with_work_queued_or_an_agent_at_work_is_not_stopped(bounds, alice, monkeypatch):
    bounds.DOCE_MAX_SERVERS_PER_USER = 3
    queued = make_project(alice, "Bakery", used_minutes_ago=60)
    working = make_project(alice, "Florist", used_minutes_ago=30)
    idle = make_project(alice, "Baker", used_minutes_ago=1)
    new = make_project(alice, "Tailor", running=False)
    pipeline_enqueue(subject=queued, job_types=[JobType.REINJECT_CREDENTIALS])
    monkeypatch.setattr(project_capacity, "_agent_busy", lambda project: project.pk == working.pk)

    project_capacity.server_slot_take(new)

    statuses = dict(Project.objects.values_list("name", "status"))
    assert statuses == {
        "Bakery": "running",
        "Florist": "running",
        "Baker": "stopped",
        "Tailor": "starting",
    }
    assert str(idle.pk) not in held()


def test_with_nothing_idle_to_stop_the_start_waits_and_says_why(bounds, alice, monkeypatch):
    bounds.DOCE_MAX_SERVERS_PER_USER = 1
    make_project(alice, "Bakery")
    new = make_project(alice, "Tailor", running=False)
    monkeypatch.setattr(project_capacity, "_agent_busy", lambda project: True)

    with pytest.raises(StepWait, match="you already run 1 project at once") as waited:
        project_capacity.server_slot_take(new)
    assert waited.value.retry_in == project_capacity.POLL_CAP_SECONDS
    new.refresh_from_db()
    assert new.server_note == waited.value.message
    assert Project.objects.get(name="Bakery").status == Project.Status.RUNNING


def test_over_the_global_bound_starts_wait_in_line(bounds, alice, bob):
    bounds.DOCE_MAX_SERVERS = 1
    make_project(bob, "Garage")
    first = make_project(alice, "Bakery", running=False)
    second = make_project(alice, "Florist", running=False)

    with pytest.raises(StepWait, match="Waiting for a free server slot: yours is next") as one:
        project_capacity.server_slot_take(first)
    assert one.value.retry_in == project_capacity.POLL_SECONDS
    with pytest.raises(StepWait, match="Waiting for a free server slot: 1 ahead") as two:
        project_capacity.server_slot_take(second)
    assert two.value.retry_in > one.value.retry_in
    first.refresh_from_db()
    assert first.server_note.startswith("Waiting for a free server slot: yours is next")

    project_services.server_stop(project=Project.objects.get(name="Garage"))  # frees its slot
    with pytest.raises(StepWait):
        project_capacity.server_slot_take(second)  # the first in line goes first
    project_capacity.server_slot_take(first)
    first.refresh_from_db()
    assert first.server_note == ""  # the waiting note goes once it has its slot


def test_stopping_or_starting_a_waiting_project_clears_its_place_and_note(
    bounds, alice, django_capture_on_commit_callbacks
):
    bounds.DOCE_MAX_SERVERS = 1
    make_project(alice, "Bakery")
    waiting = make_project(alice, "Florist", running=False)
    with pytest.raises(StepWait):
        project_capacity.server_slot_take(waiting)
    assert ServerSlot.objects.filter(key=str(waiting.pk), state="waiting").exists()

    with django_capture_on_commit_callbacks(execute=False):
        project_services.project_stop(project=waiting)
    waiting.refresh_from_db()
    assert waiting.server_note == ""
    assert not ServerSlot.objects.filter(key=str(waiting.pk)).exists()


def test_an_agent_at_work_is_read_from_the_session_status(alice, monkeypatch):
    project = make_project(alice, "Bakery")

    def client_saying(statuses):
        class Client:
            def session_status(self):
                return statuses

        @contextmanager
        def project_client(project, **options):
            yield Client()

        return project_client

    monkeypatch.setattr(
        project_services, "project_client", client_saying({"ses_1": {"type": "busy"}})
    )
    assert project_capacity._agent_busy(project)
    monkeypatch.setattr(project_services, "project_client", client_saying({}))
    assert not project_capacity._agent_busy(project)
    # A project without a reachable server is at work for nobody.
    monkeypatch.undo()
    assert not project_capacity._agent_busy(project)


def test_a_crashed_project_found_by_the_reconciler_gives_its_slot_back(bounds, alice, tmp_path):
    crashed = make_project(alice, "Bakery")
    dead = RuntimeState(
        runtime="local",
        data_dir=str(tmp_path),
        port=1,
        directory=str(tmp_path),
        pid=2**22 + 12345,  # above pid_max: no such process
        process_started_at=1.0,
    )
    Project.objects.filter(pk=crashed.pk).update(runtime="local", runtime_state=dead.to_dict())
    assert projects_reconcile() == {"crashed": 1}
    assert held() == set()
