"""OAuth tokens that stay alive (docs/oauth-tokens.md), end to end offline: a real
worker (with beat) and real OpenCode servers, a fake OAuth provider from
tests/fixtures/oauth_refresh_plugin.js (loaded through DOCE_OPENCODE_CONFIG) whose
tokens expire in seconds, and a local token endpoint that rotates refresh tokens and
refuses one used before, as OpenAI's ChatGPT sign-in does (``refresh_token_reused``)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.test import override_settings

from bench.stub_llm import StubLLM
from doce.opencode import ModelRef
from projects import services as project_services
from projects.models import Project
from providers.catalog import catalog_store
from providers.catalog.fetch import catalog_fetch
from providers.models import AuditEvent, ProviderConnection
from providers.services import FOLLOWER_REFRESH
from tests.conftest import (
    purge_broker,
    start_celery_worker,
    start_signin_worker,
    stop_process_group,
)
from tests.doce.opencode.fakes import FIXTURES
from tests.doce.opencode.servers import require_binary
from tests.integration.conftest import (
    REPLY,
    json_endpoint,
    pipeline_report,
    replies,
    settled,
    start_flow,
    wait_for,
    wait_for_flow,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PROVIDER = "doce-oauth-rotate"
MODEL = f"{PROVIDER}/rotate-model"
LIFETIME = 20  # seconds: every access token the endpoint issues expires this soon
# A prompt to a follower whose token expires within MARGIN seconds makes it the holder
# first. It must cover the time from doce's prompt to OpenCode's LLM request, which is
# seconds on a cold server of a busy machine; with a smaller margin a follower's token
# could expire between the check and the request (docs/oauth-tokens.md).
MARGIN = 15
SLOW = 240  # seconds: a server start on a busy 2-core machine can take minutes


class TokenEndpoint:
    """Issues access-N / refresh-N pairs; a refresh token works once (rotation)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.issued = 0
        self.live_refresh: set[str] = set()
        self.access_tokens: list[str] = []
        self.refreshes_seen: list[str] = []
        self.refused: list[str] = []

    def answer(self, body: dict) -> tuple[int, dict]:
        with self.lock:
            if body.get("grant_type") == "authorization_code":
                if body.get("code") != "good-code":
                    return 400, {"error": "invalid_grant"}
            else:
                token = body.get("refresh_token", "")
                self.refreshes_seen.append(token)
                if token not in self.live_refresh:
                    self.refused.append(token)
                    return 400, {"error": "refresh_token_reused"}
                self.live_refresh.discard(token)
            self.issued += 1
            access, refresh = f"access-{self.issued:04d}", f"refresh-{self.issued:04d}"
            self.live_refresh.add(refresh)
            self.access_tokens.append(access)
            return 200, {"access_token": access, "refresh_token": refresh, "expires_in": LIFETIME}


@pytest.fixture(scope="module")
def token_endpoint():
    endpoint = TokenEndpoint()

    def answer(method: str, body: dict) -> tuple[int, dict]:
        return endpoint.answer(body) if method == "POST" else (405, {})

    with json_endpoint(answer, "/token") as url:
        endpoint.url = url
        yield endpoint


@pytest.fixture(scope="module")
def llm():
    with StubLLM(reply=REPLY) as server:
        yield server


@pytest.fixture(scope="module")
def operator_config(tmp_path_factory, token_endpoint, llm):
    path = tmp_path_factory.mktemp("operator") / "opencode.json"
    config = {
        "plugin": [(FIXTURES / "oauth_refresh_plugin.js").as_uri()],
        "provider": {
            PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Rotating OAuth",
                "options": {"baseURL": llm.base_url, "tokenUrl": token_endpoint.url},
                "models": {"rotate-model": {"name": "Rotate Model"}},
            }
        },
    }
    path.write_text(json.dumps(config))
    with override_settings(
        DOCE_OPENCODE_CONFIG=str(path), DOCE_OAUTH_REFRESH_MARGIN_SECONDS=MARGIN
    ):
        yield path


@pytest.fixture(scope="module")
def worker(operator_config, token_endpoint, llm, django_db_setup, tmp_path_factory):
    """A real worker with beat in it (it runs the pipelines and reads the holder's tokens
    back every second), and the sign-in worker. The token endpoint and the LLM run on
    this machine: the sandboxes let them in through DOCE_SANDBOX_ALLOW."""
    purge_broker()
    env = {
        "DOCE_OPENCODE_CONFIG": str(operator_config),
        "DOCE_SANDBOX_ALLOW": ",".join(
            [token_endpoint.url.split("/")[2], llm.base_url.split("/")[2]]
        ),
        "DOCE_OAUTH_TOKEN_WATCH_SECONDS": "1",
        "DOCE_OAUTH_REFRESH_MARGIN_SECONDS": str(MARGIN),
    }
    folder = tmp_path_factory.mktemp("worker")
    signin = start_signin_worker(folder / "signin.log", **env)
    process = start_celery_worker(folder / "worker.log", beat=True, **env)
    yield process
    stop_process_group(process)
    stop_process_group(signin)


def started(project: Project, worker) -> Project:
    wait_for(
        lambda: settled(project),
        timeout=SLOW,
        what="the pipeline",
        explain=lambda: pipeline_report(project, worker),
    )
    assert project.status == Project.Status.RUNNING, pipeline_report(project, worker)
    return project


def answered(project: Project, count: int, worker, endpoint: TokenEndpoint) -> dict:
    """Wait for the ``count``-th reply; it must carry no error."""
    wait_for(
        lambda: len(replies(project)) >= count,
        timeout=SLOW,
        what=f"reply {count} of project {project.pk}",
        explain=lambda: pipeline_report(project, worker),
    )
    reply = replies(project)[count - 1]
    if "error" in reply:
        pytest.fail(
            f"reply {count} of project {project.pk}: {reply['error']}\n"
            f"{tokens_report(endpoint)}\n{pipeline_report(project, worker)}"
        )
    return reply


def tokens_report(endpoint: TokenEndpoint) -> str:
    """Who held what, for a failure's message (token names only: test values)."""
    return "\n".join(
        [
            f"issued {endpoint.issued}, refreshes seen {endpoint.refreshes_seen}, "
            f"refused {endpoint.refused}",
            "holders: "
            + str(list(ProviderConnection.objects.values_list("pk", "oauth_token_holder"))),
            "audit: "
            + str(
                [
                    (e.action, e.project_id, e.created_at.strftime("%H:%M:%S.%f"))
                    for e in AuditEvent.objects.order_by("pk")
                ]
            ),
        ]
    )


def expired(connection: ProviderConnection) -> bool:
    expires_at = ProviderConnection.objects.get(pk=connection.pk).oauth_expires_at
    return expires_at.timestamp() < time.time()


def stored(connection: ProviderConnection) -> tuple[str, str]:
    connection.refresh_from_db()
    return str(connection.oauth_access_token), str(connection.oauth_refresh_token)


def test_refreshed_tokens_reach_the_connection_and_every_project(
    alice, alice_client, worker, token_endpoint, llm, cleanup_projects
):
    require_binary()
    entries, version = catalog_fetch()  # the real binary's, with the test plugin
    catalog_store(entries, opencode_version=version)

    # Sign in with the code flow: tokens that expire in LIFETIME seconds.
    flow_id = start_flow(alice_client, PROVIDER, {"method": "0", "tokenUrl": token_endpoint.url})
    wait_for_flow(flow_id, {"pending", "failed"}, worker=worker, timeout=SLOW)
    alice_client.post(f"/settings/providers/oauth/{flow_id}/code/", {"code": "good-code"})
    flow = wait_for_flow(flow_id, {"succeeded", "failed"}, worker=worker, timeout=SLOW)
    assert flow.state == "succeeded", flow.error_message
    connection = ProviderConnection.objects.get(user=alice, provider_id=PROVIDER)
    assert stored(connection) == ("access-0001", "refresh-0001")

    # Two projects on it; the first holds the refresh token, the second follows.
    one = project_services.project_create(owner=alice, prompt="Site one", model=MODEL)
    started(one, worker)
    answered(one, 1, worker, token_endpoint)
    two = project_services.project_create(owner=alice, prompt="Site two", model=MODEL)
    started(two, worker)
    answered(two, 1, worker, token_endpoint)

    # A start that took longer than LIFETIME already refreshed once: wait until doce holds
    # the newest tokens, so "expired" below is about the token the servers hold.
    wait_for(
        lambda: stored(connection)[0] == f"access-{token_endpoint.issued:04d}",
        timeout=15,
        what="doce to hold the newest tokens",
    )
    # Let the current access token expire, then prompt project 1 again.
    wait_for(lambda: expired(connection), timeout=LIFETIME + 5, what="the token to expire")
    before = stored(connection)
    issued_before = token_endpoint.issued
    response = alice_client.post(f"/projects/{one.pk}/messages/", {"text": "Add a menu"})
    assert response.status_code in (200, 302)
    answered(one, 2, worker, token_endpoint)
    if token_endpoint.issued <= issued_before:
        pytest.fail(
            f"project 1 did not refresh (issued {issued_before} before the prompt); "
            f"bearers {llm.authorizations()}; replies "
            f"{[(m['id'], m.get('time')) for m in replies(one)]}\n{tokens_report(token_endpoint)}"
        )
    # ... and its new tokens reach doce within seconds, encrypted and audited.
    wait_for(
        lambda: stored(connection) != before and stored(connection)[0] != before[0],
        timeout=15,
        what="the refreshed tokens to be written back",
    )
    latest = f"access-{token_endpoint.issued:04d}", f"refresh-{token_endpoint.issued:04d}"
    wait_for(lambda: stored(connection) == latest, timeout=15, what="the latest tokens")
    assert AuditEvent.objects.filter(connection=connection, action="refreshed").exists()
    assert llm.authorizations()[-1] == f"Bearer {latest[0]}"

    # Project 2 keeps working, and a new project 3 too.
    alice_client.post(f"/projects/{two.pk}/messages/", {"text": "Add a map"})
    answered(two, 2, worker, token_endpoint)
    three = project_services.project_create(owner=alice, prompt="Site three", model=MODEL)
    started(three, worker)
    answered(three, 1, worker, token_endpoint)

    # No refresh token was ever spent twice, and every LLM call carried a token the
    # endpoint issued (none a follower's placeholder or a stale one it refused).
    assert token_endpoint.refused == []
    assert len(token_endpoint.refreshes_seen) == len(set(token_endpoint.refreshes_seen))
    assert token_endpoint.refreshes_seen, "nothing was refreshed"
    bearers = {value for value in llm.authorizations() if value}
    assert bearers <= {f"Bearer {token}" for token in token_endpoint.access_tokens}, bearers
    connection.refresh_from_db()
    assert connection.status == "connected"

    # A request doce does not send (an agent's next step, say) on a follower after the
    # expiry, at the moment project 1 refreshes: the follower has no real refresh token
    # to spend, so the real one is still spent once.
    wait_for(lambda: expired(connection), timeout=LIFETIME + 5, what="the next expiry")
    holder = ProviderConnection.objects.get(pk=connection.pk).oauth_token_holder
    follower = next(p for p in (two, three) if p.pk != holder)
    before = len(replies(follower))
    with project_services.project_client(follower) as client:
        client.prompt_async(
            follower.bootstrap_session_id, "Keep going", model=ModelRef.parse(MODEL)
        )
    alice_client.post(f"/projects/{one.pk}/messages/", {"text": "Add prices"})
    answered(one, 3, worker, token_endpoint)
    wait_for(lambda: len(replies(follower)) > before, timeout=SLOW, what="the agent's step")
    alice_client.get(f"/projects/{follower.pk}/")  # the page reads that reply
    real = [t for t in token_endpoint.refreshes_seen if t != FOLLOWER_REFRESH]
    assert len(real) == len(set(real)), token_endpoint.refreshes_seen
    assert [t for t in token_endpoint.refused if t != FOLLOWER_REFRESH] == []
    connection.refresh_from_db()
    assert connection.status == "connected"  # a follower refused says nothing of the tokens
    # ... and the follower's next prompt from doce works again.
    alice_client.post(f"/projects/{follower.pk}/messages/", {"text": "Add a map"})
    answered(follower, before + 2, worker, token_endpoint)
