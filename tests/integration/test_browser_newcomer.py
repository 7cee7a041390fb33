"""A newcomer's first hour, in Debian's Chromium, all through the pages: the first
administrator's setup, the onboarding checklist, a custom endpoint connected in
Settings › Providers, an invitation made on the team page; the invitee accepts it,
connects the endpoint as their own (a user's own endpoint is theirs alone) and builds a
project that a real worker, a real OpenCode server and the stub LLM bring up, until the
agent's reply is on the project page. Screenshots of every main page go to
``tests.conftest.SCREENSHOTS``."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from bench.stub_llm import StubLLM
from projects import services as project_services
from projects.models import Project
from providers.models import ProviderConnection
from tests.conftest import TIMEOUT_SCALE, screenshot
from tests.integration.conftest import REPLY

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ADMIN_PASSWORD = "a-long-unusual-passphrase-42"
CAROL_PASSWORD = "carols-own-passphrase-77"
ADMIN_KEY = "sk-stub-admin-0123456789abcdef"
CAROL_KEY = "sk-stub-carol-0123456789abcdef"


def own_page(browser):
    """A page in a browser context of its own (another person's browser), failing the
    test on a Content-Security-Policy violation like the ``page`` fixture."""
    context = browser.new_context()
    context.set_default_timeout(15_000 * TIMEOUT_SCALE)
    page = context.new_page()
    page.csp_violations = []
    page.on(
        "console",
        lambda m: (
            page.csp_violations.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    return page


def connect_custom_endpoint(page, base_url: str, stub: StubLLM, *, api_key: str) -> None:
    """Settings › Providers › Custom endpoint, filled and saved; the row says connected."""
    page.locator("nav[aria-label=Main]").get_by_role("link", name="Settings").click()
    page.wait_for_url(base_url + "/settings/providers/")
    page.get_by_role("link", name="Custom endpoint").click()
    form = page.locator("#custom-form")
    form.wait_for()
    form.locator("#id_provider_id").fill("stub")
    form.locator("#id_name").fill("Stub")
    form.locator("#id_base_url").fill(stub.base_url)
    form.locator("#id_models").fill(stub.model)
    form.locator("#id_api_key").fill(api_key)
    form.get_by_role("button", name="Add provider").click()
    # Saved (the key checked with the endpoint), htmx brings the list back.
    row = page.locator('#connections [data-provider-id="stub"]')
    row.wait_for(timeout=30_000 * TIMEOUT_SCALE)
    assert row.get_attribute("data-status") == "connected", row.inner_text()
    assert api_key not in page.content()


def choose_model(page, model: str) -> None:
    """The new-project form's model: a list to pick from, or a field to type in."""
    field = page.locator("#id_model")
    if field.evaluate("element => element.tagName") == "SELECT":
        field.select_option(model)
    else:
        field.fill(model)


def test_a_newcomers_first_hour(page, browser, live_server, celery_worker_process):
    url = live_server.url
    with StubLLM(reply=REPLY) as stub:
        try:
            # The first visit: setup of the administrator account.
            page.goto(url + "/")
            page.wait_for_url(url + "/setup/")
            screenshot(page, "setup")
            page.fill("#id_username", "root")
            page.fill("#id_password1", ADMIN_PASSWORD)
            page.fill("#id_password2", ADMIN_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(url + "/projects/")

            checklist = page.locator("[data-onboarding]")
            for step in ("provider", "project", "team"):
                step_item = checklist.locator(f'[data-onboarding-step="{step}"]')
                assert step_item.get_attribute("data-done") == "false", step
            screenshot(page, "onboarding-checklist")

            # The administrator connects the stub LLM as a custom endpoint.
            connect_custom_endpoint(page, url, stub, api_key=ADMIN_KEY)
            screenshot(page, "providers")
            page.goto(url + "/projects/")
            provider_step = page.locator('[data-onboarding-step="provider"]')
            assert provider_step.get_attribute("data-done") == "true"

            # ... and invites carol from the checklist's link to the team page.
            page.locator("[data-onboarding]").get_by_role("link", name="Invite your team").click()
            page.wait_for_url(url + "/team/")
            page.fill("#id_email", "carol@example.test")
            page.get_by_role("button", name="Make an invitation link").click()
            page.wait_for_url(url + "/team/")
            link = page.locator("[data-invitation-link] input").input_value()
            assert link.startswith(url + "/team/invitations/accept/")
            screenshot(page, "team")

            # Carol, in a browser of her own, accepts the invitation.
            carol = own_page(browser)
            carol.goto(link)
            carol.fill("#id_username", "carol")
            carol.fill("#id_password1", CAROL_PASSWORD)
            carol.fill("#id_password2", CAROL_PASSWORD)
            carol.click("button[type=submit]")
            carol.wait_for_url(url + "/projects/")
            assert carol.locator(".who").inner_text() == "carol"

            # The administrator's endpoint is his alone: carol connects her own.
            connect_custom_endpoint(carol, url, stub, api_key=CAROL_KEY)
            carol.goto(url + "/projects/")
            carol.get_by_role("link", name="+ New project").click()
            carol.wait_for_url(url + "/projects/new/")
            carol.fill("#id_prompt", "Build a site for my bakery")
            choose_model(carol, "stub/stub-model")
            screenshot(carol, "project-new")
            carol.get_by_role("button", name="Create project").click()
            carol.wait_for_url("**/projects/*/")

            running = carol.locator('#project-status[data-project-status="running"]')
            running.wait_for(timeout=120_000 * TIMEOUT_SCALE)
            reply = carol.locator(".entry.role-assistant", has_text=REPLY)
            reply.wait_for(timeout=90_000 * TIMEOUT_SCALE)
            assert carol.locator('[data-state="succeeded"]').count() == 5
            screenshot(carol, "project-reply")
            # The prompt reached the LLM with carol's key, never the administrator's.
            assert f"Bearer {CAROL_KEY}" in stub.authorizations()
            assert f"Bearer {ADMIN_KEY}" not in stub.authorizations()
            assert CAROL_KEY not in carol.content()

            carol.locator("nav[aria-label=Main]").get_by_role("link", name="Usage").click()
            carol.wait_for_url(url + "/usage/")
            screenshot(carol, "usage-first-project")
            carol.context.close()
            assert not carol.csp_violations, carol.csp_violations

            # Back on the administrator's side: carol is a member and has her project.
            page.goto(url + "/team/")
            assert page.locator('[data-member="carol"][data-active="true"]').count() == 1
            page.goto(url + "/projects/")
            assert page.locator('[data-onboarding-step="team"][data-done="true"]').count() == 1
            carol_user = get_user_model().objects.get(username="carol")
            project = Project.objects.get()
            assert project.owner == carol_user
            assert (project.current_model_provider_id, project.current_model_id) == (
                "stub",
                "stub-model",
            )
            assert ProviderConnection.objects.filter(provider_id="stub").count() == 2
        finally:
            for project in Project.objects.all():
                project_services.server_stop(project=project)
