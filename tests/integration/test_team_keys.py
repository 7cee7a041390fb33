"""A team key end to end (real worker, real OpenCode, stub LLM recording the
Authorization header): the granted user's project pays with it and their pages never
show it; a user without the grant is refused at project creation; revoking the grant
stops the running project's next prompt before it reaches the LLM."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project, Usage
from providers import shared
from queue_jobs.models import Job, JobState
from tests.integration.conftest import pipeline_report, project_running, replies, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TEAM_KEY = "sk-team-0123456789abcdef-9f3a"


def test_a_shared_custom_endpoint_pays_for_its_granted_user_only(
    stub, alice, bob, admin_user, celery_worker_process
):
    connection, check = shared.shared_connection_add(
        actor=admin_user,
        provider_id="stub",
        name="Company stub",
        api_key=TEAM_KEY,
        base_url=stub.base_url,
        models=[stub.model],
        grants=shared.Grants(users=(alice,)),
    )
    assert check.outcome == "valid", check.message  # checked against the endpoint
    assert stub.requests[-1].authorization == f"Bearer {TEAM_KEY}"
    stub.clear()

    project = project_running(alice, "Build a site for my bakery", celery_worker_process)
    try:
        wait_for(stub.completions, what="the initial prompt at the LLM")
        assert set(stub.authorizations()) == {f"Bearer {TEAM_KEY}"}
        wait_for(lambda: len(replies(project)) >= 1, what="the first reply")

        # Alice's pages say whose key pays, and never show it or its last characters.
        browser = Client()
        browser.force_login(alice)
        project_services.conversation_sync(project=project)
        wait_for(
            lambda: Usage.objects.filter(project=project).exists(),
            what="the reply's usage",
        )
        usage = Usage.objects.get(project=project)
        assert usage.connection_id == connection.pk
        assert usage.credential == "team key: Company stub"
        pages = {
            "project": reverse("projects:detail", args=[project.pk]),
            "status": reverse("projects:status", args=[project.pk]),
            "providers": reverse("providers:list"),
            "usage": reverse("usage"),
            "new project": reverse("projects:new"),
        }
        for name, url in pages.items():
            body = browser.get(url).content.decode()
            assert TEAM_KEY not in body, name
            assert TEAM_KEY[-4:] not in body, name
        project_page = browser.get(pages["project"]).content.decode()
        assert "team key: Company stub" in project_page

        # Bob has no grant: refused at creation, clearly, and nothing is created.
        browser.force_login(bob)
        refused = browser.post(
            pages["new project"], {"prompt": "My site", "model": "stub/stub-model"}
        )
        assert refused.status_code == 200
        assert "is a team key that is not shared with you" in refused.content.decode()
        assert not Project.objects.filter(owner=bob).exists()

        # Revoking Alice's grant: her next prompt does not reach the LLM.
        shared.shared_connection_grants_set(
            connection=connection, actor=admin_user, grants=shared.Grants(users=(bob,))
        )
        stub.clear()
        project.refresh_from_db()
        with pytest.raises(project_services.ProjectNotRunning) as refused_prompt:
            project_services.message_send(project=project, text="Add a contact page")
        assert "no longer shared with you" in str(refused_prompt.value)
        wait_for(
            lambda: Job.objects.filter(
                subject=project, type=JobType.REMOVE_CREDENTIALS, state=JobState.SUCCEEDED
            ).exists(),
            what="the team key taken out of the running server",
            explain=lambda: pipeline_report(project, celery_worker_process),
        )
        project.refresh_from_db()
        state = project_services.runtime_state(project)
        auth = json.loads(project_services.project_runtime(project).auth_file_read(state) or "{}")
        assert "stub" not in auth  # the key is out of the server
        assert stub.completions() == []
    finally:
        project_services.server_stop(project=project)
