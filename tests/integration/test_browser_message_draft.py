"""A refused message in Chromium: the page says why and the message box still holds what
the user typed (projects.views.project_message keeps it as the draft), through htmx's
form and the redirect it follows."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from projects.models import Project
from tests.factories import DEFAULT_PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_message_to_a_stopped_project_is_refused_and_kept(page, live_server, alice):
    project = Project.objects.create(
        owner=alice,
        name="Bakery",
        prompt="Build a site for my bakery",
        status=Project.Status.STOPPED,
        current_model_provider_id="stub",
        current_model_id="stub-model",
    )
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")
    page.goto(f"{live_server.url}/projects/{project.pk}/")

    text = "Ajoute une page « Tarifs » 🍰\nwith <b>prices</b> & opening hours"
    box = page.locator(".message-form textarea[name=text]")
    box.fill(text)
    page.locator(".message-form button[type=submit]").click()

    expect(
        page.locator(".message.error, [role=alert]").filter(has_text="not running")
    ).to_be_visible()
    expect(page.locator(".message-form textarea[name=text]")).to_have_value(text)
    # Once only: a reload starts with an empty box.
    page.reload()
    expect(page.locator(".message-form textarea[name=text]")).to_have_value("")
    assert page.url == f"{live_server.url}/projects/{project.pk}/"
