"""The bound on running OpenCode servers, with everything real: a Celery worker started
with DOCE_MAX_SERVERS=1 and DOCE_MAX_SERVERS_PER_USER=1, the pinned OpenCode binary,
and the stub LLM.

One story: alice's project runs; bob's start waits in line and its page says so; alice's
server is killed (no clean stop, no release) and bob's project comes up in its place;
bob's second project stops his first, least recently used, one, and both pages say so.
"""

from __future__ import annotations

import os
import signal

import pytest

from doce.models import ServerSlot
from projects import services as project_services
from projects.models import Project
from queue_jobs.models import Job, JobState
from tests.conftest import purge_broker, start_celery_worker, stop_process_group
from tests.integration.conftest import pipeline_report, settled, stub_connection, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def bounded_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    purge_broker()
    process = start_celery_worker(
        tmp_path_factory.mktemp("worker") / "worker.log",
        DOCE_MAX_SERVERS="1",
        DOCE_MAX_SERVERS_PER_USER="1",
    )
    yield process
    stop_process_group(process)


def create(client, user, prompt: str) -> Project:
    client.force_login(user)
    response = client.post("/projects/new/", {"prompt": prompt, "model": "stub/stub-model"})
    assert response.status_code == 302
    return Project.objects.get(owner=user, prompt=prompt)


def page(client, project: Project) -> str:
    return client.get(f"/projects/{project.pk}/status/").content.decode()


def test_starts_wait_for_a_slot_a_crash_frees_it_and_the_users_oldest_project_makes_room(
    client, alice, bob, stub, bounded_worker, cleanup_projects
):
    stub_connection(alice, stub)
    stub_connection(bob, stub)

    alices = create(client, alice, "Build a site for my bakery")
    report = lambda project: lambda: pipeline_report(project, bounded_worker)  # noqa: E731
    wait_for(lambda: settled(alices), what="alice's project", explain=report(alices))
    assert alices.status == Project.Status.RUNNING, report(alices)()

    # Bob's start waits in line: no server, its first step queued, and the page says so.
    bobs = create(client, bob, "Build a site for my garage")
    waiting = "Waiting for a free server slot: yours is next"
    wait_for(lambda: waiting in page(client, bobs), what="the queue note", explain=report(bobs))
    runtime_up = Job.objects.get(subject=bobs, type="runtime.up")
    assert runtime_up.state == JobState.QUEUED and runtime_up.attempts == 0
    assert waiting in runtime_up.last_error
    bobs.refresh_from_db()
    assert bobs.runtime_state == {} and bobs.status == Project.Status.STARTING

    # Alice's server dies without a word to doce: its slot frees itself.
    os.killpg(project_services.runtime_state(alices).pid, signal.SIGKILL)
    wait_for(lambda: settled(bobs), what="bob's project", explain=report(bobs))
    assert bobs.status == Project.Status.RUNNING, report(bobs)()
    assert waiting not in page(client, bobs)
    wait_for(lambda: stub.completions(), what="bob's prompt at the LLM")

    # Bob's second project: he may run one, so his idle first one is stopped for it.
    second = create(client, bob, "Build a site for my tailor shop")
    wait_for(lambda: settled(second), what="bob's second project", explain=report(second))
    assert second.status == Project.Status.RUNNING, report(second)()
    bobs.refresh_from_db()
    assert bobs.status == Project.Status.STOPPED, report(bobs)()
    assert not project_services.is_running(bobs)
    assert "Stopped to make room for your project “Build a site for my tailor shop”" in page(
        client, bobs
    )
    assert "Your idle project “Build a site for my garage” was stopped" in page(client, second)
    held = ServerSlot.objects.filter(state=ServerSlot.State.HELD)
    assert list(held.values_list("key", flat=True)) == [str(second.pk)]
