"""Everything real: a Celery worker subprocess on the configured broker, the pinned
OpenCode binary, and a stub LLM that records the Authorization header it receives."""

from __future__ import annotations

import contextlib
import json

import psutil
import pytest

from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from providers.services import connection_create
from queue_jobs.models import Job, JobState
from tests.integration.conftest import (
    FIRST_KEY,
    REPLY,
    pipeline_report,
    settled,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECOND_PROVIDER_KEY = "sk-other-0123456789abcdef0123"


def test_a_new_project_comes_up_with_the_users_key_and_answers(
    client, alice, stub, celery_worker_process, cleanup_projects
):
    stub_connection(alice, stub)
    client.force_login(alice)
    response = client.post(
        "/projects/new/", {"prompt": "Build a site for my bakery", "model": "stub/stub-model"}
    )
    assert response.status_code == 302
    project = Project.objects.get(owner=alice)
    assert response["Location"] == f"/projects/{project.pk}/"

    wait_for(
        lambda: settled(project),
        what="the pipeline",
        explain=lambda: pipeline_report(project, celery_worker_process),
    )
    assert project.status == Project.Status.RUNNING, pipeline_report(project)
    steps = list(Job.objects.filter(subject=project).order_by("position"))
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
    connection_create(
        user=alice,
        provider_id="other",
        name="Other",
        base_url=stub.base_url,
        models=["m2"],
        api_key=SECOND_PROVIDER_KEY,
    )
    response = client.post(f"/projects/{project.pk}/model/", {"model": "other/m2"})
    assert response.status_code == 302
    wait_for(
        lambda: Job.objects.filter(
            subject=project, type=JobType.REINJECT_CREDENTIALS, state=JobState.SUCCEEDED
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
    # Gone, or a zombie its parent has not reaped yet (it may reap it meanwhile).
    with contextlib.suppress(psutil.NoSuchProcess):
        assert psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
