"""A new user's first minutes, in Debian's Chromium: setup, navigation, logout, login."""

import pytest
from django.contrib.auth import get_user_model

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-unusual-passphrase-42"


def test_first_admin_setup_in_a_real_browser(page, live_server):
    page.goto(live_server.url + "/")
    assert page.url == live_server.url + "/setup/"

    page.fill("#id_username", "root")
    page.fill("#id_password1", "short")
    page.fill("#id_password2", "short")
    page.click("button[type=submit]")
    assert page.locator(".errorlist").first.is_visible()
    assert "too short" in page.content()
    assert not get_user_model().objects.exists()

    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")
    nav = page.locator("nav[aria-label=Main]")
    assert nav.get_by_role("link", name="Projects").is_visible()
    assert nav.get_by_role("link", name="Settings").is_visible()
    assert nav.get_by_role("link", name="Admin").is_visible()
    assert page.evaluate("typeof htmx") == "object"  # loaded from our own static files

    assert page.goto(live_server.url + "/setup/").status == 404

    page.goto(live_server.url + "/projects/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")
    page.fill("#id_username", "root")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")
