"""OpenCode's ``GET /event`` server-sent-event stream, as an iterator that survives disposes.

Each event is ``data: {"id", "type", "properties"}``: ``server.connected`` first,
``server.heartbeat`` every 10 s, then ``message.*``, ``session.*``. The server ends the
stream after ``server.instance.disposed`` (which every credential change needs), so the
iterator reconnects; a reconnect builds the instance again (about 1 s), and events in
that gap are lost: callers re-read messages when they need the whole transcript.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx

from doce.opencode.errors import OpenCodeTimeout, OpenCodeUnavailable

logger = logging.getLogger(__name__)

DISPOSED = "server.instance.disposed"
CONNECTED = "server.connected"
HEARTBEAT = "server.heartbeat"


@dataclass(frozen=True)
class Event:
    type: str
    properties: dict[str, Any] = field(default_factory=dict)
    id: str | None = None

    @property
    def session_id(self) -> str | None:
        return self.properties.get("sessionID")


def parse_sse(lines: Iterable[str]) -> Iterator[Event]:
    """Turn SSE lines into events. Non-JSON or non-object data is skipped: one bad frame
    must not end a stream a page is waiting on."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                event = _decode("\n".join(data))
                data = []
                if event is not None:
                    yield event
            continue
        if line.startswith(":"):
            continue  # an SSE comment (keep-alive)
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value[1:] if value.startswith(" ") else value)
    if data:  # a stream that ended without the final blank line
        event = _decode("\n".join(data))
        if event is not None:
            yield event


def _decode(payload: str) -> Event | None:
    try:
        body = json.loads(payload)
    except ValueError:
        logger.warning("skipping an OpenCode event that is not JSON")
        return None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return None
    properties = body.get("properties")
    return Event(
        type=body["type"],
        properties=properties if isinstance(properties, dict) else {},
        id=body.get("id"),
    )


@dataclass
class OpenStream:
    """One open ``/event`` response: its lines, and a way to break a blocked read from
    another thread (closing an httpx response there does not interrupt the reader)."""

    lines: Iterable[str]
    abort: Callable[[], None]


# ``connect()`` opens one stream; it raises OpenCodeUnavailable when the server cannot
# be reached and the client's typed errors for HTTP errors.
Connect = Callable[[], AbstractContextManager[OpenStream]]


class EventStream:
    """Iterate to receive events; ``close()`` (from any thread) ends the iteration.

    After a dispose or a dropped connection it reconnects (``reconnect=True``), waiting
    ``retry_delay`` and giving up with OpenCodeUnavailable once the server has been
    unreachable for ``give_up_after`` seconds. HTTP errors (401, 404, ...) are raised at
    once: reconnecting cannot fix them.

    OpenCode sends ``server.connected`` a moment before it subscribes the stream to the
    instance: a dispose within about 50 ms of it does not end (or reach) this stream.
    """

    def __init__(
        self,
        connect: Connect,
        *,
        reconnect: bool = True,
        retry_delay: float = 0.25,
        give_up_after: float = 30.0,
    ) -> None:
        self._connect = connect
        self.reconnect = reconnect
        self.retry_delay = retry_delay
        self.give_up_after = give_up_after
        self.connections = 0  # how many streams were opened (1 + reconnects)
        self._closed = threading.Event()
        self._abort: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def __iter__(self) -> Iterator[Event]:
        unreachable_since: float | None = None
        while not self.closed:
            stream = self._one_stream()
            try:
                for event in stream:
                    unreachable_since = None
                    yield event
                    if self.closed or event.type == DISPOSED:
                        break  # after a dispose the server ends the stream: go on at once
            except OpenCodeUnavailable:
                if self.closed:
                    return
                now = time.monotonic()
                unreachable_since = unreachable_since or now
                if not self.reconnect or now - unreachable_since > self.give_up_after:
                    raise
                logger.debug("OpenCode event stream dropped; reconnecting")
            finally:
                stream.close()  # releases the connection at once, also after a break
            if not self.reconnect:
                return
            self._closed.wait(self.retry_delay)

    def _one_stream(self) -> Iterator[Event]:
        try:
            with self._connect() as opened:
                with self._lock:
                    if self.closed:
                        return
                    self._abort = opened.abort
                self.connections += 1
                yield from parse_sse(opened.lines)
        except Exception:
            if self.closed:
                return  # the read that close() broke
            raise
        finally:
            with self._lock:
                self._abort = None

    def close(self) -> None:
        """End the iteration, also while another thread waits for the next event."""
        self._closed.set()
        with self._lock:
            abort = self._abort
        if abort is not None:
            with contextlib.suppress(Exception):
                abort()

    def __enter__(self) -> EventStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def response_lines(response: httpx.Response) -> Iterator[str]:
    try:
        yield from response.iter_lines()
    except httpx.TimeoutException:
        raise OpenCodeTimeout("no OpenCode event or heartbeat in time") from None
    except (httpx.TransportError, httpx.StreamError) as exc:
        raise OpenCodeUnavailable(f"OpenCode event stream broke: {exc}") from None


def abort_response(response: httpx.Response) -> None:
    """Shut the stream's socket down: a read blocked in another thread returns at once."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)
    else:  # a test transport: closing is enough
        response.close()
