"""A user creates a project in Chromium and watches the steps and the reply appear
(htmx polling, no page reload), with a real worker, OpenCode server and stub LLM."""

import pytest

from bench.stub_llm import StubLLM
from projects import services as project_services
from projects.models import Project
from tests.factories import DEFAULT_PASSWORD
from tests.integration.conftest import FIRST_KEY, REPLY, stub_connection

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_create_a_project_and_see_the_reply(page, live_server, alice, celery_worker_process):
    with StubLLM(reply=REPLY) as stub:
        stub_connection(alice, stub)
        try:
            page.goto(live_server.url + "/accounts/login/")
            page.fill("#id_username", "alice")
            page.fill("#id_password", DEFAULT_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(live_server.url + "/projects/")
            page.get_by_role("link", name="+ New project").click()
            page.fill("#id_prompt", "Build a site for my bakery")
            page.select_option("#id_model", "stub/stub-model")
            page.get_by_role("button", name="Create project").click()
            page.wait_for_url("**/projects/*/")
            page.evaluate("window.__sameDocument = true")  # lost on a full page reload

            page.locator('#project-status[data-project-status="running"]').wait_for(timeout=90_000)
            page.locator(".entry.role-assistant", has_text=REPLY).wait_for(timeout=60_000)
            assert page.evaluate("window.__sameDocument") is True
            steps = page.locator("[data-step]")
            assert steps.count() == 5
            assert page.locator('[data-state="succeeded"]').count() == 5
            assert FIRST_KEY not in page.content()
            assert stub.authorizations()[0] == f"Bearer {FIRST_KEY}"
        finally:
            for project in Project.objects.all():
                project_services.server_stop(project=project)
