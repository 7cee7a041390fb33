"""Provider forms in Chromium show only the fields that apply: GitHub Copilot's
Enterprise URL appears when "GitHub Enterprise" is chosen and goes away again, at once
(doce/static/doce/app.js), under the Content-Security-Policy."""

import pytest

from tests.conftest import screenshot
from tests.factories import DEFAULT_PASSWORD

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_enterprise_url_shows_only_for_github_enterprise(page, live_server, alice):
    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")

    page.goto(live_server.url + "/settings/providers/github-copilot/oauth/?method=0")
    enterprise_url = page.locator("#id_enterpriseUrl")
    assert page.locator("#id_deploymentType").is_visible()
    assert enterprise_url.is_hidden()
    screenshot(page, "copilot-sign-in")

    page.select_option("#id_deploymentType", "enterprise")
    enterprise_url.wait_for(state="visible")
    page.select_option("#id_deploymentType", "github.com")
    enterprise_url.wait_for(state="hidden")
