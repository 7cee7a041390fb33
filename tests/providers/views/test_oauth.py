"""OAuth sign-ins: the pages, the flow's states, tokens into a connection, cancel, expiry,
the reaper. The runtime is a stand-in here; the integration test runs real OpenCode."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from providers import oauth, services
from providers.credentials import opencode_credential
from providers.models import AuditEvent, OAuthFlow, ProviderConnection
from tests.providers.views.fake_runtime import TOKENS

pytestmark = pytest.mark.django_db
START = "/settings/providers/github-copilot/oauth/"


def start(client, django_capture_on_commit_callbacks, data=None) -> OAuthFlow:
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(START, data or {"method": "0", "deploymentType": "github.com"})
    assert response.status_code == 302, response.content.decode()[:2000]
    flow = OAuthFlow.objects.get()
    assert response["Location"] == f"/settings/providers/oauth/{flow.pk}/"
    return flow


def flow_url(flow: OAuthFlow, action: str = "") -> str:
    return f"/settings/providers/oauth/{flow.pk}/" + (f"{action}/" if action else "")


def test_the_start_page_shows_the_methods_prompts(alice_client, catalog):
    html = alice_client.get(START + "?method=0").content.decode()
    assert 'name="method"' in html and 'name="deploymentType"' in html
    assert 'name="enterpriseUrl"' in html and "Login with GitHub Copilot" in html
    assert alice_client.get(START + "?method=7").status_code == 404
    assert alice_client.get("/settings/providers/deepseek/oauth/").status_code == 404


def test_a_prompt_that_applies_is_required(alice_client, catalog, runtime, queued):
    response = alice_client.post(START, {"method": "0", "deploymentType": "enterprise"})
    assert "This is needed to connect with “GitHub Enterprise”." in response.content.decode()
    assert not OAuthFlow.objects.exists() and queued == []


def test_starting_queues_a_task_and_the_page_polls(
    alice, alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(
        alice_client,
        django_capture_on_commit_callbacks,
        {"method": "0", "deploymentType": "github.com", "enterpriseUrl": "ignored"},
    )
    assert queued == [(str(flow.pk), False)]
    assert (flow.state, flow.provider_id, flow.method) == ("starting", "github-copilot", 0)
    assert flow.inputs == {"deploymentType": "github.com"}  # the "when" prompt did not apply
    assert flow.expires_at - timezone.now() > timedelta(minutes=9)
    assert AuditEvent.objects.filter(action="oauth_started", user=alice).exists()
    page = alice_client.get(flow_url(flow)).content.decode()
    assert "Preparing the sign-in" in page and 'hx-trigger="every 1s"' in page


def test_a_code_flow_end_to_end(
    alice, alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks, settings
):
    settings.DOCE_OPENCODE_REQUEST_TIMEOUT, settings.DOCE_OPENCODE_START_TIMEOUT = 10, 60
    flow = start(alice_client, django_capture_on_commit_callbacks)
    assert oauth.oauth_flow_run(str(flow.pk)) == "pending"
    assert runtime.authorized == [("github-copilot", 0, {"deploymentType": "github.com"})]
    # The first request builds the new server's instance: it may take as long as a start.
    assert runtime.authorize_timeouts == [60]
    page = alice_client.get(flow_url(flow)).content.decode()
    assert 'href="https://auth.example.test/authorize?state=abc" target="_blank"' in page
    assert "Enter code ABCD-1234" in page and 'name="code"' in page
    assert "hx-trigger" not in page  # nothing to poll while the user pastes

    response = alice_client.post(flow_url(flow, "code"), {"code": "good-code"}, follow=True)
    html = response.content.decode()
    assert "Connected GitHub Copilot." in html
    assert 'data-provider-id="github-copilot" data-status="connected"' in html
    assert TOKENS["access"] not in html and TOKENS["refresh"] not in html
    connection = ProviderConnection.objects.get(user=alice, provider_id="github-copilot")
    assert connection.auth_type == "oauth"
    assert connection.oauth_access_token == TOKENS["access"]
    assert connection.oauth_refresh_token == TOKENS["refresh"]
    assert connection.oauth_expires_at == datetime(2100, 1, 1, tzinfo=UTC)
    assert connection.metadata == {"deploymentType": "github.com"}
    flow.refresh_from_db()
    assert flow.state == "succeeded" and flow.connection == connection
    assert not Path(flow.data_dir).exists() and runtime.removed == [flow.data_dir]
    assert AuditEvent.objects.filter(action="oauth_completed", connection=connection).exists()


def test_a_wrong_code_fails_the_flow_and_offers_a_retry(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))
    response = alice_client.post(flow_url(flow, "code"), {"code": "wrong"}, follow=True)
    html = response.content.decode()
    assert "did not accept the sign-in" in html and "Try again" in html
    flow.refresh_from_db()
    assert flow.state == "failed" and not Path(flow.data_dir).exists()
    assert not ProviderConnection.objects.exists()


@pytest.mark.parametrize("code", ["", "   ", "abc\x00def", "x" * 5000])
def test_bad_codes_get_a_clear_error(
    alice_client, catalog, runtime, queued, code, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))
    response = alice_client.post(flow_url(flow, "code"), {"code": code})
    assert response.status_code == 200
    assert "Paste the code" in response.content.decode() or "does not look like a code" in (
        response.content.decode()
    )
    assert runtime.callbacks == []
    flow.refresh_from_db()
    assert flow.state == "pending"


def test_a_double_submitted_code_completes_once(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))
    OAuthFlow.objects.filter(pk=flow.pk).update(state="completing")  # the first one is at it
    second = alice_client.post(flow_url(flow, "code"), {"code": "good-code"})
    assert second.status_code == 302 and second["Location"] == flow_url(flow)
    assert runtime.callbacks == []


def test_an_auto_flow_finishes_in_the_task(
    alice, alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    runtime.kind = "auto"
    flow = start(alice_client, django_capture_on_commit_callbacks)
    assert oauth.oauth_flow_run(str(flow.pk)) == "succeeded"
    [(provider_id, method, code, timeout)] = runtime.callbacks
    assert code is None and 0 < timeout <= 600
    assert ProviderConnection.objects.get(user=alice).oauth_access_token == TOKENS["access"]
    page = alice_client.get(flow_url(flow)).content.decode()
    assert 'data-flow-state="succeeded"' in page and "hx-trigger" not in page


def test_an_auto_flow_polls_while_it_waits(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    OAuthFlow.objects.filter(pk=flow.pk).update(state="pending", kind="auto", url="https://x.test/")
    page = alice_client.get(flow_url(flow), headers={"HX-Request": "true"}).content.decode()
    assert page.lstrip().startswith("<section") and 'hx-trigger="every 1s"' in page
    assert "follows the sign-in by itself" in page


def test_an_auto_flow_that_is_never_approved_expires(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    runtime.kind, runtime.auto_result = "auto", "timeout"
    flow = start(alice_client, django_capture_on_commit_callbacks)
    assert oauth.oauth_flow_run(str(flow.pk)) == "expired"
    flow.refresh_from_db()
    assert "expired" in flow.error_message and not Path(flow.data_dir).exists()
    assert AuditEvent.objects.filter(action="oauth_failed").exists()


def test_cancel(alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))
    response = alice_client.post(flow_url(flow, "cancel"), follow=True)
    assert "Sign-in cancelled." in response.content.decode()
    flow.refresh_from_db()
    assert flow.state == "cancelled" and not Path(flow.data_dir).exists()
    # The task (an auto flow's wait) sees the cancel and stops.
    assert oauth.oauth_flow_run(str(flow.pk)) == "gone"
    assert alice_client.post(flow_url(flow, "code"), {"code": "good-code"}).status_code == 302
    assert not ProviderConnection.objects.exists()


def test_a_cancel_before_the_server_started_stops_it_when_it_does(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_cancel(flow=flow)
    assert oauth.oauth_flow_run(str(flow.pk)) == "gone"
    assert runtime.started == []


def test_starting_again_replaces_an_older_flow(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    first = start(alice_client, django_capture_on_commit_callbacks)
    OAuthFlow.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(minutes=2))
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(START, {"method": "0", "deploymentType": "github.com"})
    first.refresh_from_db()
    assert first.state == "cancelled"
    assert OAuthFlow.objects.filter(state="starting").count() == 1


def test_a_double_submitted_start_shows_the_same_flow(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    again = alice_client.post(START, {"method": "0", "deploymentType": "github.com"})
    assert again["Location"] == flow_url(flow)
    assert OAuthFlow.objects.count() == 1 and len(queued) == 1


def test_starting_is_rate_limited(alice_client, catalog, runtime, queued, settings):
    settings.DOCE_PROVIDER_ATTEMPTS = 1
    alice_client.post(START, {"method": "0", "deploymentType": "github.com"})
    response = alice_client.post(
        START, {"method": "0", "deploymentType": "enterprise", "enterpriseUrl": "ghe.example.com"}
    )
    assert "Too many attempts" in response.content.decode()
    assert OAuthFlow.objects.count() == 1


def test_another_users_flow_answers_404(
    alice, bob, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    bobs_client, alices_client = Client(), Client()
    bobs_client.force_login(bob)
    alices_client.force_login(alice)
    flow = start(bobs_client, django_capture_on_commit_callbacks)
    oauth.oauth_flow_run(str(flow.pk))
    assert alices_client.get(flow_url(flow)).status_code == 404
    assert alices_client.post(flow_url(flow, "code"), {"code": "good-code"}).status_code == 404
    assert alices_client.post(flow_url(flow, "cancel")).status_code == 404
    flow.refresh_from_db()
    assert flow.state == "pending"


def test_tokens_of_an_enterprise_account_and_of_an_api_method(alice, runtime, tmp_path):
    from providers.catalog import catalog_entry, catalog_store
    from tests.providers.conftest import CATALOG

    catalog_store(CATALOG)
    entry = catalog_entry("github-copilot")
    runtime.tokens = {**TOKENS, "enterpriseUrl": "company.ghe.com", "accountId": "acct-1"}
    flow = oauth.oauth_flow_start(
        user=alice,
        entry=entry,
        method=entry.oauth_methods[0],
        inputs={"deploymentType": "enterprise"},
    )
    oauth.oauth_flow_run(str(flow.pk))
    oauth.oauth_flow_submit_code(flow=OAuthFlow.objects.get(pk=flow.pk), code="good-code")
    connection = ProviderConnection.objects.get(provider_id="github-copilot")
    assert connection.oauth_enterprise_url == "https://company.ghe.com"
    assert connection.oauth_account_id == "acct-1"
    body = opencode_credential(connection).to_json()
    assert body["enterpriseUrl"] == "https://company.ghe.com" and body["accountId"] == "acct-1"

    runtime.tokens = {"type": "api", "key": "sk-from-a-plugin-1234567890"}
    flow = oauth.oauth_flow_start(
        user=alice,
        entry=entry,
        method=entry.oauth_methods[0],
        inputs={"deploymentType": "github.com"},
    )
    oauth.oauth_flow_run(str(flow.pk))
    oauth.oauth_flow_submit_code(flow=OAuthFlow.objects.get(pk=flow.pk), code="good-code")
    connection.refresh_from_db()
    assert connection.auth_type == "api" and connection.api_key == "sk-from-a-plugin-1234567890"
    assert connection.oauth_access_token is None


def test_a_callback_that_leaves_no_tokens_fails_clearly(alice, runtime, catalog):
    from providers.catalog import catalog_entry

    runtime.tokens = None
    entry = catalog_entry("github-copilot")
    flow = oauth.oauth_flow_start(user=alice, entry=entry, method=entry.oauth_methods[0], inputs={})
    oauth.oauth_flow_run(str(flow.pk))
    flow = oauth.oauth_flow_submit_code(flow=OAuthFlow.objects.get(pk=flow.pk), code="good-code")
    assert flow.state == "failed" and "tokens could not be read" in flow.error_message
    assert not ProviderConnection.objects.exists()


def test_the_reaper(alice, bob, runtime, catalog, settings):
    from providers.catalog import catalog_entry

    entry = catalog_entry("github-copilot")
    method = entry.oauth_methods[0]
    stale = oauth.oauth_flow_start(user=alice, entry=entry, method=method, inputs={})
    oauth.oauth_flow_run(str(stale.pk))
    OAuthFlow.objects.filter(pk=stale.pk).update(expires_at=timezone.now() - timedelta(minutes=5))
    live = oauth.oauth_flow_start(user=bob, entry=entry, method=method, inputs={})
    oauth.oauth_flow_run(str(live.pk))
    old_folder = oauth.flow_root() / "0123456789abcdef0123456789abcdef"
    young_folder = oauth.flow_root() / "fedcba9876543210fedcba9876543210"
    old_catalog = Path(settings.DOCE_DATA_DIR) / "catalog" / "deadbeef"
    for folder in (old_folder, young_folder, old_catalog):
        folder.mkdir(parents=True)
    an_hour_ago = time.time() - 7200
    for folder in (old_folder, old_catalog):
        os.utime(folder, (an_hour_ago, an_hour_ago))
    finished = OAuthFlow.objects.create(
        user=alice, provider_id="x", method=0, state="failed", expires_at=timezone.now()
    )
    OAuthFlow.objects.filter(pk=finished.pk).update(created_at=timezone.now() - timedelta(days=40))

    assert oauth.reap_oauth_flows() == 3
    stale.refresh_from_db()
    assert stale.state == "expired" and not Path(stale.data_dir).exists()
    assert OAuthFlow.objects.get(pk=live.pk).state == "pending" and Path(live.data_dir).exists()
    assert not old_folder.exists() and not old_catalog.exists() and young_folder.exists()
    assert not OAuthFlow.objects.filter(pk=finished.pk).exists()


def test_a_finished_flow_page_offers_a_retry_and_no_cancel(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    OAuthFlow.objects.filter(pk=flow.pk).update(state="failed", error_message="It broke.")
    html = alice_client.get(flow_url(flow)).content.decode()
    assert "It broke." in html and "Try again" in html and "/cancel/" not in html
    assert 'name="deploymentType" value="github.com"' in html


def test_the_list_links_to_a_sign_in_in_progress(
    alice_client, catalog, runtime, queued, django_capture_on_commit_callbacks
):
    flow = start(alice_client, django_capture_on_commit_callbacks)
    html = alice_client.get("/settings/providers/").content.decode()
    assert f'href="{flow_url(flow)}"' in html


def test_services_connection_still_works(alice):
    # connection_update keeps its signature for OAuth tokens replacing an API key.
    connection = services.connection_create(
        user=alice, provider_id="openai", api_key="sk-" + "a" * 30
    )
    services.connection_update(
        connection=connection,
        auth_type="oauth",
        oauth_access_token="a" * 20,
        oauth_refresh_token="r" * 20,
    )
    connection.refresh_from_db()
    assert connection.api_key is None and connection.auth_type == "oauth"


def test_a_sign_in_address_that_is_not_a_web_url_is_refused(alice, runtime, catalog, monkeypatch):
    from doce.opencode import OAuthAuthorization
    from providers.catalog import catalog_entry
    from tests.providers.views import fake_runtime

    monkeypatch.setattr(
        fake_runtime.FakeClient,
        "oauth_authorize",
        lambda self, *args: OAuthAuthorization("javascript:alert(1)", "code", ""),
    )
    entry = catalog_entry("github-copilot")
    flow = oauth.oauth_flow_start(user=alice, entry=entry, method=entry.oauth_methods[0], inputs={})
    assert oauth.oauth_flow_run(str(flow.pk)) == "failed"
    flow.refresh_from_db()
    assert flow.url == "" and "not a web URL" in flow.error_message
    assert not Path(flow.data_dir).exists()
