"""A form shows only the fields that apply: GitHub Copilot's Enterprise URL (a prompt with
a ``when`` on the deployment type) is hidden for github.com and shown for GitHub
Enterprise, by the server (no script needed: after a submit) and by app.js at once."""

from __future__ import annotations

import re

import pytest

from providers.catalog import catalog_entry
from providers.forms import OAuthStartForm
from providers.models import OAuthFlow

pytestmark = pytest.mark.django_db
START = "/settings/providers/github-copilot/oauth/"


def row_of(html: str, name: str) -> str:
    """The ``<div ...>`` that opens the form row holding the field ``name``."""
    at = html.index(f'name="{name}"')
    return re.findall(r"<div[^>]*>", html[:at])[-1]


def form(data=None) -> OAuthStartForm:
    entry = catalog_entry("github-copilot")
    return OAuthStartForm(data, method=entry.oauth_methods[0], methods=entry.oauth_methods)


def test_the_enterprise_url_is_hidden_for_github_com(alice_client, catalog):
    html = alice_client.get(START + "?method=0").content.decode()
    assert "prompt-inactive" in row_of(html, "enterpriseUrl")
    assert "prompt-inactive" not in row_of(html, "deploymentType")
    # app.js shows it when the other field takes the value it needs.
    field = re.search(r'<input[^>]*name="enterpriseUrl"[^>]*>', html)[0]
    assert 'data-when-field="deploymentType"' in field
    assert 'data-when-op="eq"' in field and 'data-when-value="enterprise"' in field
    assert "Only needed when" not in html


def test_choosing_enterprise_without_a_script_brings_the_field(
    alice_client, catalog, runtime, queued
):
    response = alice_client.post(START, {"method": "0", "deploymentType": "enterprise"})
    html = response.content.decode()
    assert "prompt-inactive" not in row_of(html, "enterpriseUrl")
    assert "This is needed to connect with “GitHub Enterprise”." in html
    assert not OAuthFlow.objects.exists() and queued == []


def test_github_com_ignores_a_hidden_enterprise_url(alice_client, catalog, runtime, queued):
    response = alice_client.post(
        START, {"method": "0", "deploymentType": "github.com", "enterpriseUrl": "stale.ghe.com"}
    )
    assert response.status_code == 302
    assert OAuthFlow.objects.get().inputs == {"deploymentType": "github.com"}


def test_enterprise_with_its_url_starts(alice_client, catalog, runtime, queued):
    response = alice_client.post(
        START, {"method": "0", "deploymentType": "enterprise", "enterpriseUrl": "co.ghe.com"}
    )
    assert response.status_code == 302
    assert OAuthFlow.objects.get().inputs == {
        "deploymentType": "enterprise",
        "enterpriseUrl": "co.ghe.com",
    }


@pytest.mark.parametrize(
    ("data", "hidden"),
    [
        (None, True),
        ({"method": "0", "deploymentType": "github.com"}, True),
        ({"method": "0", "deploymentType": "enterprise"}, False),
        ({"method": "0", "deploymentType": ""}, True),
    ],
)
def test_which_fields_are_inactive(catalog, data, hidden):
    assert ("enterpriseUrl" in form(data).inactive_prompts) is hidden
    assert "deploymentType" not in form(data).inactive_prompts
