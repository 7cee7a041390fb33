"""doce.opencode.async_events: one /event connection for asyncio code (the live
transcript's hub), over httpx's mock transport."""

from __future__ import annotations

import base64

import httpx
import pytest

from doce.opencode.async_events import event_stream
from doce.opencode.errors import OpenCodeUnavailable, Unauthorized
from tests.asyncio_helpers import run_coroutine

PASSWORD = "pw-0123456789"


def collect(handler, **options):
    async def run():
        transport = httpx.MockTransport(handler)
        return [
            event
            async for event in event_stream(
                "http://127.0.0.1:4096/", PASSWORD, transport=transport, **options
            )
        ]

    return run_coroutine(run())


def test_events_are_parsed_frame_by_frame_with_auth_and_directory():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = (
            b'data: {"type":"server.connected","properties":{}}\n\n'
            b": keep-alive\n\n"
            b"data: not json\n\n"
            b'data: {"type":"message.part.delta",\n'
            b'data: "properties":{"sessionID":"ses_1","delta":"Hi"}}\n\n'
            b'data: {"type":"session.idle","properties":{"sessionID":"ses_1"}}'
        )
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    events = collect(handler, directory="/work/p1")
    assert [e.type for e in events] == ["server.connected", "message.part.delta", "session.idle"]
    assert events[1].properties["delta"] == "Hi" and events[1].session_id == "ses_1"
    request = seen[0]
    assert request.url.path == "/event" and request.url.params["directory"] == "/work/p1"
    expected = base64.b64encode(f"opencode:{PASSWORD}".encode()).decode()
    assert request.headers["authorization"] == f"Basic {expected}"


def test_a_wrong_password_is_raised_at_once():
    with pytest.raises(Unauthorized):
        collect(lambda request: httpx.Response(401))


def test_an_unreachable_server_is_unavailable_and_says_no_secret():
    def handler(request):
        raise httpx.ConnectError(f"refused {PASSWORD}")

    with pytest.raises(OpenCodeUnavailable) as caught:
        collect(handler)
    assert PASSWORD not in str(caught.value)
