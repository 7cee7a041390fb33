"""Everything real: a Celery worker subprocess on the configured broker, the pinned
OpenCode binary, and a stub LLM that records the Authorization header it receives."""

from __future__ import annotations

import json
import time

import psutil
import pytest

from projects import services as project_services
from projects.models import Project
from providers.services import connection_create
from queue_jobs.models import Job, JobState, JobType
from tests.stub_llm import StubLLM

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FIRST_KEY = "sk-stub-first-0123456789abcdef"
SECOND_PROVIDER_KEY = "sk-other-0123456789abcdef0123"
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
        for job in Job.objects.filter(project=project).order_by("created_at", "position")
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

    wait_for(lambda: _settled(project), what="the pipeline",
             explain=lambda: pipeline_report(project, celery_worker_process))  # fmt: skip
    assert project.status == Project.Status.RUNNING, pipeline_report(project)
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

    # Change the model: the new provider's credential is injected into the running server.
    connection_create(user=alice, provider_id="other", name="Other", base_url=stub.base_url,
                      models=["m2"], api_key=SECOND_PROVIDER_KEY)  # fmt: skip
    response = client.post(f"/projects/{project.pk}/model/", {"model": "other/m2"})
    assert response.status_code == 302
    wait_for(
        lambda: Job.objects.filter(
            project=project, type=JobType.REINJECT_CREDENTIALS, state=JobState.SUCCEEDED
        ).exists(),
        what="the new provider's credential",
    )
    assert json.loads(layout.auth_file.read_text())["other"]["key"] == SECOND_PROVIDER_KEY
    config = json.loads((layout.workspace / "opencode.json").read_text())
    assert config["model"] == "other/m2" and "other" in config["provider"]
    project.refresh_from_db()
    stub.clear()
    project_services.message_send(project=project, text="Now with the other model")
    wait_for(stub.completions, what="a prompt to the new model")
    assert stub.authorizations() == [f"Bearer {SECOND_PROVIDER_KEY}"]
    assert stub.completions()[0].body["model"] == "m2"

    # Delete: the server stops, its folders (auth.json included) and the row go.
    pid = project.runtime_state["pid"]
    assert client.post(f"/projects/{project.pk}/delete/").status_code == 302
    wait_for(lambda: not Project.objects.filter(pk=project.pk).exists(), what="the deletion")
    assert not layout.data_dir.exists()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
