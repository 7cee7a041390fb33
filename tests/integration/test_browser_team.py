"""A newcomer's team, in Debian's Chromium: setup, the onboarding checklist, an invitation
made on the team page, the invitee accepting it and signing in. Screenshots of the
checklist and the team page go to ``tests.conftest.SCREENSHOTS`` (ignored by git)."""

import pytest
from django.contrib.auth import get_user_model

from tests.conftest import screenshot

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ADMIN_PASSWORD = "a-long-unusual-passphrase-42"
CAROL_PASSWORD = "carols-own-passphrase-77"


def test_setup_checklist_invite_and_accept(page, browser, live_server):
    page.goto(live_server.url + "/")
    page.fill("#id_username", "root")
    page.fill("#id_password1", ADMIN_PASSWORD)
    page.fill("#id_password2", ADMIN_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")

    checklist = page.locator("[data-onboarding]")
    assert checklist.is_visible()
    for step in ("provider", "project", "team"):
        assert checklist.locator(f'[data-onboarding-step="{step}"][data-done="false"]').count() == 1
    screenshot(page, "team-onboarding-checklist")

    checklist.get_by_role("link", name="Invite your team").click()
    page.wait_for_url(live_server.url + "/team/")
    page.fill("#id_email", "carol@example.test")
    page.get_by_role("button", name="Make an invitation link").click()
    page.wait_for_url(live_server.url + "/team/")
    link = page.locator("[data-invitation-link] input").input_value()
    assert link.startswith(live_server.url + "/team/invitations/accept/")
    screenshot(page, "team-invitation-link")

    # Carol, in a browser of her own.
    context = browser.new_context()
    context.set_default_timeout(15_000)
    carol = context.new_page()
    violations: list[str] = []
    carol.on(
        "console",
        lambda m: (
            violations.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    carol.goto(link)
    carol.fill("#id_username", "carol")
    carol.fill("#id_password1", CAROL_PASSWORD)
    carol.fill("#id_password2", CAROL_PASSWORD)
    carol.click("button[type=submit]")
    carol.wait_for_url(live_server.url + "/projects/")
    assert carol.locator(".who").inner_text() == "carol"
    assert carol.locator("nav[aria-label=Main]").get_by_role("link", name="Team").count() == 0

    carol.get_by_role("button", name="Log out").click()
    carol.wait_for_url("**/accounts/login/")
    carol.fill("#id_username", "carol")
    carol.fill("#id_password", CAROL_PASSWORD)
    carol.click("button[type=submit]")
    carol.wait_for_url(live_server.url + "/projects/")
    assert carol.locator(".who").inner_text() == "carol"

    assert carol.goto(link).status == 410
    assert "already used" in carol.content()
    context.close()
    assert not violations, violations

    # Back on the admin's side: carol is listed, and the team step is done.
    page.goto(live_server.url + "/team/")
    assert page.locator('[data-member="carol"][data-active="true"]').count() == 1
    page.goto(live_server.url + "/projects/")
    assert page.locator('[data-onboarding-step="team"][data-done="true"]').count() == 1
    assert get_user_model().objects.count() == 2
