"""OpenCode's ``GET /event`` stream for asyncio code: one connection, as an async iterator.

The live transcript (``projects.stream``) runs under ASGI, where a blocked thread per
stream would be wasteful; it owns the reconnect policy itself (it must tell its viewers
that events may have been lost), so this module opens exactly one connection and ends
when the server ends it (after ``server.instance.disposed``) or it breaks. Events are
parsed by the same code as the threaded ``EventStream`` (``events.parse_sse``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from doce.opencode import errors
from doce.opencode.client import DEFAULT_TIMEOUT, EVENT_READ_TIMEOUT, USERNAME, _tls_context
from doce.opencode.events import Event, parse_sse


async def event_stream(
    base_url: str,
    password: str,
    *,
    directory: str | None = None,
    connect_timeout: float = DEFAULT_TIMEOUT,
    read_timeout: float = EVENT_READ_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[Event]:
    """Yield the events of one ``/event`` connection until the server ends it.

    Raises OpenCodeUnavailable when the server cannot be reached or the stream breaks,
    OpenCodeTimeout after ``read_timeout`` seconds of silence (the server sends a
    heartbeat every 10 s), and the typed HTTP errors (Unauthorized, ...) at once.
    Closing the generator (or cancelling its task) closes the connection.
    """
    base_url = base_url.rstrip("/")
    async with httpx.AsyncClient(
        base_url=base_url,
        auth=httpx.BasicAuth(USERNAME, password),
        timeout=httpx.Timeout(connect_timeout, read=read_timeout),
        transport=transport,
        verify=_tls_context(base_url.startswith("http://")),
        trust_env=False,  # never through an operator's HTTP proxy
    ) as http:
        params = {"directory": directory} if directory else None
        try:
            async with http.stream("GET", "/event", params=params) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise errors.from_response(response, ())
                frame: list[str] = []
                async for line in response.aiter_lines():
                    if line:
                        frame.append(line)
                        continue
                    if frame:
                        for event in parse_sse([*frame, ""]):
                            yield event
                        frame = []
                for event in parse_sse(frame):
                    yield event
        except httpx.TimeoutException:
            raise errors.OpenCodeTimeout("no OpenCode event or heartbeat in time") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise errors.OpenCodeUnavailable(
                f"OpenCode event stream failed: {type(exc).__name__}"
            ) from None
