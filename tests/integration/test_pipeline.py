"""Everything real: a Celery worker subprocess on the configured broker, the pinned
OpenCode binary, and a stub LLM that records the Authorization header it receives."""

from __future__ import annotations

import json
import time

import pytest

from projects import services as project_services
from projects.models import Project
from providers.services import connection_create
from queue_jobs.models import Job, JobState
from tests.stub_llm import StubLLM

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIRST_KEY = "sk-stub-first-0123456789abcdef"
REPLY = "Your bakery site is ready."


def wait_for(predicate, *, timeout: float = 90, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stub():
    with StubLLM(reply=REPLY) as server:
        yield server


@pytest.fixture
def cleanup_projects():
    yield
    for project in Project.objects.all():
        project_services.server_stop(project=project)


def _settled(project: Project) -> Project | None:
    project.refresh_from_db()
    return project if project.status in (Project.Status.RUNNING, Project.Status.ERROR) else None


def test_a_new_project_comes_up_with_the_users_key_and_answers(
    client, alice, stub, celery_worker_process, cleanup_projects
):
    connection_create(
        user=alice, provider_id="stub", name="Stub", base_url=stub.base_url,
        models=["stub-model"], api_key=FIRST_KEY,
    )  # fmt: skip
    client.force_login(alice)
    response = client.post(
        "/projects/new/", {"prompt": "Build a site for my bakery", "model": "stub/stub-model"}
    )
    assert response.status_code == 302
    project = Project.objects.get(owner=alice)
    assert response["Location"] == f"/projects/{project.pk}/"

    wait_for(lambda: _settled(project), what="the pipeline")
    assert project.status == Project.Status.RUNNING, project.error_message
    steps = list(Job.objects.filter(project=project).order_by("position"))
    assert [job.state for job in steps] == [JobState.SUCCEEDED] * 5
    assert project.provider_credentials_set and project.initial_prompt_sent
    assert project.bootstrap_session_id

    wait_for(stub.completions, what="a completion request")
    assert stub.authorizations()[0] == f"Bearer {FIRST_KEY}"

    def page_with_reply():
        html = client.get(f"/projects/{project.pk}/").content.decode()
        return html if REPLY in html else None

    page = wait_for(page_with_reply, what="the reply on the project page")
    assert 'data-project-status="running"' in page
    assert FIRST_KEY not in page

    # The key went through PUT /auth into this project's own auth.json, not a config file.
    layout = project_services.runtime_state(project).layout
    assert json.loads(layout.auth_file.read_text())["stub"]["key"] == FIRST_KEY
    assert FIRST_KEY not in (layout.workspace / "opencode.json").read_text()
