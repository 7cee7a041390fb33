"""GET /projects/<id>/stream/: the live transcript's server-sent events, for the owner
only, under ASGI; the page that uses it, and its fallback."""

from __future__ import annotations

import asyncio

import pytest
from django.core import signals
from django.db import close_old_connections

from doce.asgi import application
from projects import stream, views
from projects.models import Project
from projects.stream import StreamHub, Upstream
from projects.transcript import Entry, Part, Transcript
from tests.asyncio_helpers import run_coroutine, run_in_thread

# Committed: the requests run in a thread of their own (tests.asyncio_helpers), whatever
# event loop an earlier test (Playwright's) left in this one.
pytestmark = pytest.mark.django_db(transaction=True)


class NoUpstream:
    """A hub whose projects never get a server: only the viewer's own first event."""

    def __init__(self) -> None:
        self.located: list[int] = []

    async def locate(self, project_id: int) -> Upstream | None:
        self.located.append(project_id)
        return None


@pytest.fixture
def fake_hub(monkeypatch):
    upstream = NoUpstream()
    hubs: list[StreamHub] = []

    def hub() -> StreamHub:
        if not hubs:
            hubs.append(StreamHub(locate=upstream.locate, linger=60))
        return hubs[0]

    monkeypatch.setattr(stream, "hub", hub)
    return hubs


def session_cookie(client, user) -> str:
    if user is None:
        return ""
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def asgi_get(client, user, path: str, hubs=()):
    """GET through doce's ASGI application, the way uvicorn calls it; the client goes
    away after the first chunk of the body. Returns the status, the headers, the first
    chunk, and how many viewers each feed still counts once the request has ended."""

    async def get():
        started, chunks = [], []
        got_body = asyncio.Event()
        requested = False

        async def receive():
            nonlocal requested
            if not requested:
                requested = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await got_body.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                started.append(message)
            elif message.get("body"):
                chunks.append(message["body"])
                got_body.set()

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), (b"cookie", cookie.encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        await asyncio.wait_for(application(scope, receive, send), 10)
        viewers = {pk: len(feed.viewers) for hub in hubs for pk, feed in hub.feeds.items()}
        for hub in hubs:
            await hub.close()
        headers = {k.decode().lower(): v.decode() for k, v in started[0]["headers"]}
        return started[0]["status"], headers, (chunks or [b""])[0], viewers

    cookie = session_cookie(client, user)
    # As Django's test client does: a request must not close the test's database
    # connection (it holds the test's transaction).
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        return run_coroutine(get())
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


def test_the_owner_gets_an_event_stream_that_starts_with_a_reload(client, alice, project, fake_hub):
    status, headers, first, viewers = asgi_get(
        client, alice, f"/projects/{project.pk}/stream/", fake_hub
    )
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache"
    assert b"event: reload\n" in first
    assert viewers == {project.pk: 0}  # subscribed, and unsubscribed when the page left


def test_someone_elses_project_is_a_404(client, bob, project, fake_hub):
    status, _, _, _ = asgi_get(client, bob, f"/projects/{project.pk}/stream/")
    assert status == 404
    assert fake_hub == []  # no subscription was made


def test_a_missing_project_is_a_404(client, alice, fake_hub):
    status, _, _, _ = asgi_get(client, alice, "/projects/999999/stream/")
    assert status == 404


def test_anonymous_visitors_are_sent_to_the_login(client, alice, project, fake_hub):
    status, headers, _, _ = asgi_get(client, None, f"/projects/{project.pk}/stream/")
    assert status == 302
    assert headers["location"].startswith("/accounts/login/")
    assert fake_hub == []


def test_under_wsgi_the_stream_says_no_content_so_the_page_polls(alice_client, project):
    response = run_in_thread(lambda: alice_client.get(f"/projects/{project.pk}/stream/"))
    assert response.status_code == 204


def test_the_page_of_a_running_project_connects_to_the_stream(alice_client, project):
    Project.objects.filter(pk=project.pk).update(status=Project.Status.STARTING)
    html = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert f'data-live-stream="/projects/{project.pk}/stream/"' in html
    assert "doce/live.js" in html
    # Polling stays only as the fallback where no stream is open.
    assert 'hx-trigger="every 1s"' in html and "data-poll-unless-live" in html


def test_a_stopped_projects_page_opens_no_stream(alice_client, project):
    Project.objects.filter(pk=project.pk).update(status=Project.Status.STOPPED)
    html = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert "data-live-stream" not in html


def test_the_fragment_marks_each_text_part_with_its_id_and_length(
    alice_client, project, monkeypatch
):
    """The page appends a delta to its part from the part's length in code points."""
    text = "Café <b>ok</b>\nnext"
    transcript = Transcript(
        entries=[
            Entry(role="user", text="hi", id="msg_u", parts=[Part("prt_u", "hi")]),
            Entry(role="assistant", text=text, done=False, id="msg_a", parts=[Part("prt_a", text)]),
        ],
        busy=True,
    )
    monkeypatch.setattr(views, "project_transcript", lambda project, whole=False: transcript)
    html = alice_client.get(f"/projects/{project.pk}/transcript/").content.decode()
    assert 'data-message="msg_a"' in html
    assert f'data-part="prt_a" data-length="{len(text)}"' in html
    assert "Café &lt;b&gt;ok&lt;/b&gt;<br>next" in html
    assert '<span class="muted pending">' in html
