"""The real thing: the provider catalog read from the pinned OpenCode binary, and OAuth
sign-ins run end to end offline, on real per-flow OpenCode servers started by a real
Celery worker, with fake OAuth methods from plugins loaded through DOCE_OPENCODE_CONFIG:
tests/fixtures/oauth_plugin.js (a "code" flow) and
tests/fixtures/oauth_auto_plugin.js (an "auto" flow the test approves)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from django.test import override_settings

from doce.opencode.runtimes import RuntimeState
from providers.catalog import catalog_entry, catalog_status, catalog_store
from providers.catalog.fetch import catalog_fetch
from providers.models import OAuthFlow, ProviderConnection
from tests.conftest import deadline_in, purge_broker, start_signin_worker, stop_process_group
from tests.doce.opencode.fakes import FIXTURES, processes_in
from tests.doce.opencode.servers import require_binary
from tests.integration.conftest import (
    assert_sealed,
    json_endpoint,
    start_flow,
    wait_for,
    wait_for_flow,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

AUTO_PLUGIN = FIXTURES / "oauth_auto_plugin.js"


@pytest.fixture(scope="module")
def operator_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("operator") / "opencode.json"
    plugins = [(FIXTURES / "oauth_plugin.js").as_uri(), AUTO_PLUGIN.as_uri()]
    path.write_text(json.dumps({"plugin": plugins}))
    with override_settings(DOCE_OPENCODE_CONFIG=str(path)):
        yield path


@pytest.fixture(scope="module")
def fetched_catalog(operator_config, django_db_setup, django_db_blocker):
    """The catalog of the real binary, read once (about 5 s) with the test plugins (its
    server takes, then gives back, a slot of the server ledger: the database)."""
    require_binary()
    started = time.monotonic()
    with django_db_blocker.unblock():
        entries, version = catalog_fetch()
    return entries, version, time.monotonic() - started


@pytest.fixture
def catalog(fetched_catalog):
    entries, version, _ = fetched_catalog
    catalog_store(entries, opencode_version=version)


@pytest.fixture(scope="module")
def worker(operator_config, approval_server, django_db_setup, django_db_blocker, tmp_path_factory):
    """The real sign-in worker (the flows' own queue, nothing else) that starts the flows'
    servers with the test plugins. The fake provider's approval endpoint runs on this
    machine: as an operator's own OAuth endpoint would, it is let into the sandboxes by
    DOCE_SANDBOX_ALLOW."""
    purge_broker()
    process = start_signin_worker(
        tmp_path_factory.mktemp("worker") / "worker.log",
        DOCE_OPENCODE_CONFIG=str(operator_config),
        DOCE_SANDBOX_ALLOW=approval_server.url.split("/")[2],
    )
    yield process
    stop_process_group(process)


@pytest.fixture
def approval(approval_server):
    approval_server.state = "waiting"
    return approval_server


@pytest.fixture(scope="module")
def approval_server():
    """What the auto plugin's callback polls: {"state": "waiting" | "approved" | ...}."""

    class Approval:
        state = "waiting"
        polls = 0

    def answer(method: str, body: dict) -> tuple[int, dict]:
        Approval.polls += 1
        return 200, {"state": Approval.state}

    with json_endpoint(answer, "/approval") as url:
        Approval.url = url
        yield Approval


def assert_gone(flow: OAuthFlow) -> None:
    data_dir = Path(flow.data_dir)
    deadline = deadline_in(15)
    while data_dir.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not data_dir.exists(), f"{data_dir} was not removed"
    assert processes_in(data_dir) == [], "the flow's OpenCode server still runs"


def test_the_catalog_comes_from_opencode(fetched_catalog, catalog):
    entries, version, seconds = fetched_catalog
    status = catalog_status()
    assert status.providers >= 200 and status.opencode_version == version
    anthropic = catalog_entry("anthropic")
    assert anthropic.name == "Anthropic" and anthropic.env == ("ANTHROPIC_API_KEY",)
    assert len(anthropic.models) > 3 and anthropic.api_method is not None
    copilot = catalog_entry("github-copilot")
    assert [p.key for p in copilot.oauth_methods[0].prompts] == ["deploymentType", "enterpriseUrl"]
    plugin = catalog_entry("doce-oauth-test")
    assert [m.type for m in plugin.methods] == ["oauth", "api"]
    assert catalog_entry("doce-oauth-auto").oauth_methods[0].prompts[0].key == "approvalUrl"
    size = len(json.dumps(entries))
    assert size < 2_000_000, f"the trimmed catalog is {size} bytes"
    assert seconds < 60


def test_a_code_sign_in_end_to_end(alice, alice_client, catalog, worker):
    flow_id = start_flow(alice_client, "doce-oauth-test", {"method": "0"})
    flow = wait_for_flow(flow_id, {"pending", "failed"}, worker=worker)
    assert flow.state == "pending", flow.error_message
    page = alice_client.get(f"/settings/providers/oauth/{flow_id}/").content.decode()
    assert 'href="https://auth.doce.test/authorize?client=doce" target="_blank"' in page
    assert "Paste the code shown after you approve." in page

    # A wrong code: the provider refuses, the flow fails and its server goes.
    alice_client.post(f"/settings/providers/oauth/{flow_id}/code/", {"code": "wrong-code"})
    failed = OAuthFlow.objects.get(pk=flow_id)
    assert failed.state == "failed" and "did not accept" in failed.error_message
    assert_gone(failed)

    # Try again (the page's button posts the same method), then the right code.
    retry_id = start_flow(alice_client, "doce-oauth-test", {"method": "0"})
    assert retry_id != flow_id
    wait_for_flow(retry_id, {"pending"}, worker=worker)
    response = alice_client.post(
        f"/settings/providers/oauth/{retry_id}/code/", {"code": "good-code"}, follow=True
    )
    html = response.content.decode()
    assert 'data-provider-id="doce-oauth-test" data-status="connected"' in html
    assert "test-access-token" not in html and "test-refresh-token" not in html
    connection = ProviderConnection.objects.get(user=alice, provider_id="doce-oauth-test")
    assert connection.auth_type == "oauth"
    assert connection.oauth_access_token == "test-access-token"
    assert connection.oauth_refresh_token == "test-refresh-token"
    assert connection.oauth_expires_at.year == 2100
    done = OAuthFlow.objects.get(pk=retry_id)
    assert done.state == "succeeded" and done.connection == connection
    assert_gone(done)


def test_an_auto_sign_in_finishes_in_the_worker(alice, alice_client, catalog, worker, approval):
    flow_id = start_flow(
        alice_client, "doce-oauth-auto", {"method": "0", "approvalUrl": approval.url}
    )
    flow = wait_for_flow(flow_id, {"pending", "failed"}, worker=worker)
    assert flow.state == "pending" and flow.kind == "auto", flow.error_message
    page = alice_client.get(f"/settings/providers/oauth/{flow_id}/").content.decode()
    assert "Enter the code WXYZ-1234" in page and 'hx-trigger="every 1s"' in page
    # The worker's callback is blocked, polling the provider (through the sandbox, which
    # lets exactly that allowed endpoint through).
    polled = approval.polls
    wait_for(lambda: approval.polls >= polled + 2, timeout=30, what="the provider's polls")
    assert OAuthFlow.objects.get(pk=flow_id).state == "pending"
    # Its server is sealed like a project's.
    server = RuntimeState.from_dict(OAuthFlow.objects.get(pk=flow_id).runtime_state)
    assert_sealed(server, own=[server.layout.home, server.layout.workspace])

    approval.state = "approved"
    flow = wait_for_flow(flow_id, {"succeeded", "failed"}, worker=worker, timeout=30)
    assert flow.state == "succeeded", flow.error_message
    connection = ProviderConnection.objects.get(user=alice, provider_id="doce-oauth-auto")
    assert connection.oauth_access_token == "auto-access-token"
    assert connection.metadata == {"approvalUrl": approval.url}
    assert_gone(flow)


def test_cancelling_an_auto_sign_in_stops_its_server(alice_client, catalog, worker, approval):
    flow_id = start_flow(
        alice_client, "doce-oauth-auto", {"method": "0", "approvalUrl": approval.url}
    )
    flow = wait_for_flow(flow_id, {"pending"}, worker=worker)
    assert processes_in(Path(flow.data_dir)), "the flow's server should be running"
    response = alice_client.post(f"/settings/providers/oauth/{flow_id}/cancel/", follow=True)
    assert "Sign-in cancelled." in response.content.decode()
    flow = OAuthFlow.objects.get(pk=flow_id)
    assert flow.state == "cancelled"
    assert_gone(flow)
    approval.state = "approved"  # too late: nothing is listening any more
    time.sleep(1)
    assert OAuthFlow.objects.get(pk=flow_id).state == "cancelled"
    assert not ProviderConnection.objects.filter(provider_id="doce-oauth-auto").exists()
