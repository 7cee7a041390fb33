"""Sign-ins within bounds, on their own queue, and methods that return to a local port:
labelled, and refused with a clear message when the browser cannot reach that port. The
runtime is a stand-in; tests/integration/test_signins_never_block_projects.py runs the
real thing."""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from doce.celery import app
from providers import oauth
from providers.models import OAuthFlow
from providers.oauth_guard import local_callback

pytestmark = pytest.mark.django_db
COPILOT = "/settings/providers/github-copilot/oauth/"
OPENAI = "/settings/providers/openai/oauth/"
LOCAL_URL = (
    "https://auth.openai.com/oauth/authorize?response_type=code&client_id=app_x"
    "&redirect_uri=http%3A%2F%2Flocalhost%3A1455%2Fauth%2Fcallback&state=s"
)


def live_flow(user, provider_id: str, *, expired: bool = False) -> OAuthFlow:
    now = timezone.now()
    return OAuthFlow.objects.create(
        user=user,
        provider_id=provider_id,
        method=0,
        state=OAuthFlow.State.PENDING,
        kind="auto",
        server_password=secrets.token_urlsafe(8),
        expires_at=now - timedelta(seconds=5) if expired else now + timedelta(minutes=5),
    )


def post_start(client, django_capture_on_commit_callbacks, url=COPILOT, **extra):
    with django_capture_on_commit_callbacks(execute=True):
        return client.post(url, {"method": "0", "deploymentType": "github.com"}, **extra)


# --- the queue ----------------------------------------------------------------------------
def test_sign_ins_go_to_their_own_queue(settings):
    route = app.amqp.router.route({}, "providers.oauth_flow_run")
    assert route["queue"].name == settings.DOCE_OAUTH_QUEUE == "signin"
    # Everything else stays on the default queue that project work uses.
    assert app.amqp.router.route({}, "queue_jobs.run_job")["queue"].name == "celery"


# --- bounds -------------------------------------------------------------------------------
def test_a_user_past_their_bound_gets_a_clear_error_and_no_server(
    alice, alice_client, catalog, runtime, queued, settings, django_capture_on_commit_callbacks
):
    settings.DOCE_OAUTH_MAX_FLOWS_PER_USER = 2
    live_flow(alice, "openai")
    live_flow(alice, "gitlab")
    live_flow(alice, "poe", expired=True)  # its time is up: it no longer counts
    response = post_start(alice_client, django_capture_on_commit_callbacks)
    assert response.status_code == 200
    html = response.content.decode()
    assert "You already have 2 sign-ins in progress (at most 2 at once)" in html
    assert "Finish or cancel one" in html
    assert not OAuthFlow.objects.filter(provider_id="github-copilot").exists()
    assert queued == [] and runtime.started == []


def test_a_restarted_sign_in_replaces_its_own_flow_within_the_bound(
    alice, alice_client, catalog, runtime, queued, settings, django_capture_on_commit_callbacks
):
    """One pending flow per provider: starting the same one again cancels the older first,
    so it never counts against the new one."""
    settings.DOCE_OAUTH_MAX_FLOWS_PER_USER = 1
    old = live_flow(alice, "github-copilot")
    response = post_start(alice_client, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    old.refresh_from_db()
    assert old.state == "cancelled" and len(queued) == 1


def test_the_global_bound_counts_everyone(
    alice, bob, alice_client, catalog, runtime, queued, settings, django_capture_on_commit_callbacks
):
    settings.DOCE_OAUTH_MAX_FLOWS = 2
    live_flow(bob, "openai")
    live_flow(bob, "gitlab")
    response = post_start(alice_client, django_capture_on_commit_callbacks)
    assert "doce is running as many sign-ins as it allows right now" in response.content.decode()
    assert queued == []
    OAuthFlow.objects.filter(user=bob, provider_id="gitlab").update(state="cancelled")
    assert post_start(alice_client, django_capture_on_commit_callbacks).status_code == 302
    assert len(queued) == 1


# --- local-port callbacks -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "where"),
    [
        (LOCAL_URL, "localhost:1455"),
        ("https://x.test/a?redirect_uri=http://127.0.0.1:8085/cb", "127.0.0.1:8085"),
        ("https://x.test/a?redirect_url=http%3A%2F%2F%5B%3A%3A1%5D%3A9%2Fcb", "[::1]:9"),
        ("http://localhost:9000/authorize?client_id=x", None),  # an IdP on the host
        ("https://x.test/a?redirect_uri=https%3A%2F%2Fapp.example.com%2Fcb", None),
        ("https://github.com/login/device", None),
        ("https://x.test/a?redirect_uri=http://localhost:notaport/cb", None),
    ],
)
def test_local_callbacks_are_recognised(url, where):
    assert local_callback(url) == where


@pytest.mark.parametrize(
    ("host", "address", "on_host"),
    [
        ("localhost:8000", "127.0.0.1", True),
        ("[::1]:8000", "::1", True),
        ("testserver", "127.0.0.1", False),  # a name that is not the host's own
        ("localhost:8000", "192.0.2.7", False),  # a proxy or a published port in front
    ],
)
def test_the_task_is_told_whether_the_browser_runs_on_the_host(
    alice_client,
    catalog,
    runtime,
    queued,
    settings,
    host,
    address,
    on_host,
    django_capture_on_commit_callbacks,
):
    settings.ALLOWED_HOSTS = ["localhost", "[::1]", "testserver"]
    post_start(
        alice_client, django_capture_on_commit_callbacks, HTTP_HOST=host, REMOTE_ADDR=address
    )
    assert [flag for _, flag in queued] == [on_host]


def run_local_sign_in(alice_client, runtime, queued, capture, **extra) -> OAuthFlow:
    runtime.kind, runtime.url = "auto", LOCAL_URL
    response = post_start(alice_client, capture, url=OPENAI, **extra)
    assert response.status_code == 302, response.content.decode()[:2000]
    flow_id, on_host = queued[-1]
    oauth.oauth_flow_run(flow_id, browser_on_host=on_host)
    return OAuthFlow.objects.get(pk=flow_id)


def test_a_local_port_sign_in_is_refused_in_the_sandbox(
    alice_client, catalog, runtime, queued, settings, django_capture_on_commit_callbacks
):
    settings.DOCE_SANDBOX = "on"
    flow = run_local_sign_in(
        alice_client,
        runtime,
        queued,
        django_capture_on_commit_callbacks,
        HTTP_HOST="localhost",
        REMOTE_ADDR="127.0.0.1",
    )
    assert flow.state == "failed" and runtime.callbacks == []  # nobody waits for it
    assert "localhost:1455" in flow.error_message and "sandbox" in flow.error_message
    assert not Path(flow.data_dir).exists() and runtime.removed == [flow.data_dir]
    page = alice_client.get(f"/settings/providers/oauth/{flow.pk}/").content.decode()
    assert "sandbox keeps closed" in page and "Try again" in page
    # From now on the connect page says so beside that method (and no other).
    methods = alice_client.get("/settings/providers/openai/").content.decode()
    assert methods.count("data-local-callback") == 1
    assert "the browser must run on the doce host" in methods


def test_a_local_port_sign_in_from_another_machine_is_refused(
    alice_client, catalog, runtime, queued, settings, django_capture_on_commit_callbacks
):
    settings.DOCE_SANDBOX = "off"
    flow = run_local_sign_in(alice_client, runtime, queued, django_capture_on_commit_callbacks)
    assert flow.state == "failed"
    assert "works only from a browser running on the doce host" in flow.error_message


def test_a_local_port_sign_in_from_the_host_goes_ahead_labelled(
    alice_client, catalog, runtime, queued, settings, django_capture_on_commit_callbacks
):
    settings.DOCE_SANDBOX = "off"
    runtime.auto_result = "timeout"  # still waiting when the page is looked at
    flow = run_local_sign_in(
        alice_client,
        runtime,
        queued,
        django_capture_on_commit_callbacks,
        HTTP_HOST="localhost:8000",
        REMOTE_ADDR="127.0.0.1",
    )
    assert runtime.callbacks, "the task waited for the approval"
    assert flow.state == "expired"
    OAuthFlow.objects.filter(pk=flow.pk).update(state="pending")
    page = alice_client.get(f"/settings/providers/oauth/{flow.pk}/").content.decode()
    assert "This sign-in returns to localhost:1455" in page


def test_other_sign_ins_are_not_labelled(alice_client, catalog, runtime, queued):
    assert (
        "data-local-callback"
        not in alice_client.get("/settings/providers/openai/").content.decode()
    )
