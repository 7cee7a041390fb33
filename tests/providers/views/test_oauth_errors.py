"""A failed sign-in says in plain words what happened and what to do; OpenCode's own error
(the technical detail) is kept in the audit log and shown, folded away, to staff only."""

from __future__ import annotations

import pytest
from django.utils.html import escape

from doce.opencode import OAuthFlowError, OpenCodeError
from providers import oauth
from providers.models import AuditEvent, OAuthFlow
from tests.factories import UserFactory
from tests.providers.views.fake_runtime import FakeClient

pytestmark = pytest.mark.django_db
START = "/settings/providers/github-copilot/oauth/"
RAW = "500 UnknownError: Unexpected server error. Check server logs for details"


def start(client, capture) -> OAuthFlow:
    with capture(execute=True):
        response = client.post(START, {"method": "0", "deploymentType": "github.com"})
    assert response.status_code == 302, response.content.decode()[:2000]
    return OAuthFlow.objects.get()


def failing_authorize(monkeypatch, error: Exception) -> None:
    def authorize(self, provider_id, method, inputs=None):
        raise error

    monkeypatch.setattr(FakeClient, "oauth_authorize", authorize)


@pytest.fixture
def carol_staff_client(client):
    client.force_login(UserFactory(username="carol", is_staff=True))
    return client


def page_of(client, flow) -> str:
    return client.get(f"/settings/providers/oauth/{flow.pk}/").content.decode()


def test_a_user_sees_plain_words_and_no_technical_detail(
    alice_client, catalog, runtime, queued, monkeypatch, django_capture_on_commit_callbacks
):
    failing_authorize(monkeypatch, OpenCodeError(RAW, status_code=500, name="UnknownError"))
    flow = start(alice_client, django_capture_on_commit_callbacks)
    assert oauth.oauth_flow_run(str(flow.pk)) == "failed"

    html = page_of(alice_client, flow)
    assert escape(oauth.START_FAILED) in html and "Try again" in html
    assert "UnknownError" not in html and "server logs" not in html
    assert "data-technical-detail" not in html
    flow.refresh_from_db()
    assert flow.error_message == oauth.START_FAILED
    event = AuditEvent.objects.get(action="oauth_failed", detail__flow=str(flow.pk))
    assert "500 UnknownError" in event.detail["detail"]
    assert event.detail["message"] == oauth.START_FAILED


def test_staff_see_the_technical_detail_folded_away(
    carol_staff_client, catalog, runtime, queued, monkeypatch, django_capture_on_commit_callbacks
):
    failing_authorize(monkeypatch, OpenCodeError(RAW, status_code=500, name="UnknownError"))
    flow = start(carol_staff_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))

    html = page_of(carol_staff_client, flow)
    assert escape(oauth.START_FAILED) in html
    start_at = html.index("<details")
    folded = html[start_at : html.index("</details>", start_at)]
    assert "data-technical-detail" in folded and "staff only" in folded
    assert "OpenCodeError: 500 UnknownError" in folded and "Check server logs" in folded
    assert html.count("Check server logs") == 1  # only inside the folded detail


def test_a_refused_start_says_to_check_the_details(
    carol_staff_client, catalog, runtime, queued, monkeypatch, django_capture_on_commit_callbacks
):
    refused = OAuthFlowError(
        "400 ProviderAuthValidationFailed",
        status_code=400,
        name="ProviderAuthValidationFailed",
        data={"message": "enterpriseUrl: invalid domain"},
    )
    failing_authorize(monkeypatch, refused)
    flow = start(carol_staff_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))

    html = page_of(carol_staff_client, flow)
    assert escape(oauth.START_REFUSED) in html
    assert "400 ProviderAuthValidationFailed: enterpriseUrl: invalid domain" in html


def test_a_detail_never_carries_a_secret(
    carol_staff_client, catalog, runtime, queued, monkeypatch, django_capture_on_commit_callbacks
):
    secret = "sk-ant-api03-" + "x" * 40
    failing_authorize(monkeypatch, OpenCodeError(f"502 upstream said Bearer {secret}"))
    flow = start(carol_staff_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))

    html = page_of(carol_staff_client, flow)
    assert "data-technical-detail" in html and secret not in html
    event = AuditEvent.objects.get(action="oauth_failed", detail__flow=str(flow.pk))
    assert secret not in str(event.detail)


def test_a_wrong_code_has_no_detail_for_users_and_its_name_for_staff(
    alice_client, carol_staff_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(carol_staff_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))
    carol_staff_client.post(f"/settings/providers/oauth/{flow.pk}/code/", {"code": "wrong"})
    html = page_of(carol_staff_client, flow)
    assert escape(oauth.CODE_REJECTED) in html
    assert "ProviderAuthOauthCallbackFailed" in html[html.index("<details") :]
