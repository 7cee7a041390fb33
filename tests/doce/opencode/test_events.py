"""The /event stream: SSE parsing and reconnecting after a dispose."""

from __future__ import annotations

import httpx
import pytest

from doce.opencode import OpenCodeClient, OpenCodeUnavailable, Unauthorized
from doce.opencode.events import parse_sse
from tests.doce.opencode import responses as r


def test_parse_sse_reads_opencode_frames():
    events = list(parse_sse(r.EVENT_LINES))
    assert [e.type for e in events] == [
        "server.connected",
        "session.status",
        "server.instance.disposed",
    ]
    assert events[1].session_id == r.SESSION_ID
    assert events[1].properties["status"] == {"type": "busy"}
    assert events[0].id == "evt_21fd22824001SP6xdo27OKbOeW"


def test_parse_sse_skips_comments_and_bad_frames_and_joins_data_lines():
    lines = [
        ": keep-alive",
        "",
        "data: not json",
        "",
        'data: ["a list"]',
        "",
        'data: {"type":"session.idle",',
        'data: "properties":{"sessionID":"ses_1"}}',
        "",
        'data:{"type":"server.heartbeat","properties":{}}',  # no space after the colon
    ]
    assert [(e.type, e.session_id) for e in parse_sse(lines)] == [
        ("session.idle", "ses_1"),
        ("server.heartbeat", None),
    ]


def _streaming_client(handler) -> OpenCodeClient:
    return OpenCodeClient(
        "http://127.0.0.1:4101",
        "pw-0123456789",
        directory="/srv/p/7/workspace",
        transport=httpx.MockTransport(handler),
    )


def test_the_stream_reconnects_after_a_dispose():
    connections = []

    def handler(request):
        connections.append(request)
        # First: connected, status, disposed (the server ends it); then connected again.
        lines = r.EVENT_LINES if len(connections) == 1 else r.EVENT_LINES[:2]
        content = ("\n".join(lines) + "\n").encode()
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=content)

    client = _streaming_client(handler)
    stream = client.events()
    stream.retry_delay = 0.01
    seen = []
    for event in stream:
        seen.append(event.type)
        if len(seen) == 4:
            stream.close()
    assert seen == [
        "server.connected",
        "session.status",
        "server.instance.disposed",
        "server.connected",
    ]
    assert stream.connections == 2
    assert all(req.url.params["directory"] == "/srv/p/7/workspace" for req in connections)
    assert all(req.headers["authorization"].startswith("Basic ") for req in connections)


def test_without_reconnect_the_stream_ends_at_the_dispose():
    def handler(request):
        content = ("\n".join(r.EVENT_LINES) + "\n").encode()
        return httpx.Response(200, content=content)

    events = list(_streaming_client(handler).events(reconnect=False))
    assert events[-1].type == "server.instance.disposed"


def test_an_unreachable_server_ends_the_stream_after_the_grace_period():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    stream = _streaming_client(refuse).events(give_up_after=0.2)
    stream.retry_delay = 0.02
    with pytest.raises(OpenCodeUnavailable):
        list(stream)


def test_http_errors_are_not_retried():
    calls = []

    def handler(request):
        calls.append(request)
        return httpx.Response(401)

    with pytest.raises(Unauthorized):
        list(_streaming_client(handler).events())
    assert len(calls) == 1
