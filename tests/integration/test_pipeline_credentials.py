"""Credentials follow the user's connection into running projects: an edited key is
re-injected, a disconnected one removed, a rejected one reported (real worker, real
OpenCode, stub LLM recording the Authorization header)."""

from __future__ import annotations

import json

import pytest

from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from providers.models import ProviderConnection
from providers.services import connection_delete, connection_update
from queue_jobs.models import Job, JobState
from tests.integration.conftest import (
    FIRST_KEY,
    replies,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECOND_KEY = "sk-stub-second-fedcba9876543210"
PROVIDER_AUTH = "Provider not configured or key rejected"


def _job_done(project, job_type):
    return Job.objects.filter(subject=project, type=job_type, state=JobState.SUCCEEDED).exists()


def _auth_json(project) -> dict:
    path = project_services.runtime_state(project).layout.auth_file
    return json.loads(path.read_text()) if path.exists() else {}


def test_an_edited_key_reaches_the_running_project_and_a_disconnect_removes_it(
    client, alice, stub, running_project
):
    project, connection = running_project
    assert stub.authorizations() == [f"Bearer {FIRST_KEY}"]

    connection_update(connection=connection, api_key=SECOND_KEY)
    wait_for(lambda: _job_done(project, JobType.REINJECT_CREDENTIALS), what="re-injection")
    assert _auth_json(project)["stub"]["key"] == SECOND_KEY
    stub.clear()
    project_services.message_send(project=project, text="Add a contact page")
    wait_for(stub.completions, what="the follow-up prompt")
    assert stub.authorizations() == [f"Bearer {SECOND_KEY}"]
    wait_for(lambda: len(replies(project)) >= 2, what="the second reply")

    connection_delete(connection=ProviderConnection.objects.get(pk=connection.pk))
    wait_for(lambda: _job_done(project, JobType.REMOVE_CREDENTIALS), what="removal")
    assert "stub" not in _auth_json(project)
    assert SECOND_KEY not in project_services.runtime_state(project).layout.auth_file.read_text()

    # No prompt goes out on the lost key (nor keyless): the page says why, and where to
    # connect one.
    stub.clear()
    client.force_login(alice)
    response = client.post(
        f"/projects/{project.pk}/messages/", {"text": "And a menu page"}, follow=True
    )
    html = response.content.decode()
    assert "You can no longer use stub" in html
    assert "Settings › Providers" in html
    assert stub.completions() == []


def test_a_rejected_key_marks_the_connection_error(client, alice, stub, running_project):
    project, connection = running_project
    stub.status = 401
    project_services.message_send(project=project, text="Add a gallery")
    client.force_login(alice)

    def connection_in_error():
        client.get(f"/projects/{project.pk}/transcript/")
        connection.refresh_from_db()
        return connection.status == ProviderConnection.Status.ERROR

    wait_for(connection_in_error, what="the connection to be marked error")
    assert "401" in connection.error_message
    project.refresh_from_db()
    assert project.error_kind == Project.ErrorKind.PROVIDER_AUTH
    assert PROVIDER_AUTH in client.get(f"/projects/{project.pk}/").content.decode()
