"""The live transcript: one subscription to a project's OpenCode ``/event`` stream per web
process, fanned out to every page that shows the project.

A ``Feed`` per project holds the upstream connection (an asyncio task) and the viewers'
queues. It turns OpenCode's events into three page events:

- ``delta``: a piece of the text of a message part, as OpenCode streams it
  (``{"message", "part", "start", "text"}``; ``start`` is the part's length in code
  points before this piece, so a page that has just re-rendered the part skips what it
  already shows);
- ``status``: ``busy`` or ``idle``;
- ``reload``: anything else that changes the transcript (a new message, a finished one,
  an error, a reconnect that may have lost events): the page asks the server for the
  transcript fragment, rendered and escaped as always.

Nothing else leaves the hub: no credentials, no tool output, no file paths. A viewer
whose queue is full is dropped (its stream ends, and its page reconnects and reloads)
instead of slowing the others. The upstream reconnects after a dispose at once, and
after a failure with back-off (the project's server may restart on a new port, so its
address is looked up again each time); it stops ``linger`` seconds after the last
viewer left.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.db import close_old_connections

from doce.opencode.async_events import event_stream
from doce.opencode.errors import OpenCodeError
from doce.opencode.events import CONNECTED, Event
from projects import services
from projects.models import Project

logger = logging.getLogger(__name__)

QUEUE_SIZE = 512  # page events a viewer may fall behind before it is dropped
LINGER_SECONDS = 30.0  # keep the upstream this long after the last viewer left
RETRY_MIN_SECONDS = 0.25
RETRY_MAX_SECONDS = 10.0
NOT_RUNNING_POLL_SECONDS = 1.0  # a starting project is looked up (in the database) this often
KEEPALIVE_SECONDS = 15.0  # an SSE comment this often keeps proxies from closing the stream


@dataclass(frozen=True)
class Upstream:
    """Where a project's events come from."""

    base_url: str
    password: str = field(repr=False)
    directory: str | None
    session_id: str


@dataclass(frozen=True)
class PageEvent:
    name: str  # "delta" | "status" | "reload"
    data: str = ""

    def encode(self) -> bytes:
        lines = "".join(f"data: {line}\n" for line in self.data.split("\n"))
        return f"event: {self.name}\n{lines}\n".encode()


RELOAD = PageEvent("reload")
# The agent's files may have changed (an edit, the file watcher, a tool call that ended):
# the page reloads its preview. Coalesced: at most one per FILES_EVERY seconds, and the
# last change of a burst always gets one.
FILES = PageEvent("files")
FILES_EVERY = 0.3
_FILE_EVENTS = frozenset({"file.edited", "file.watcher.updated"})

Locate = Callable[[int], Awaitable[Upstream | None]]
OpenStream = Callable[[Upstream], AsyncIterator[Event]]


class Viewer:
    """One open page: iterate to receive its events; the iteration ends when it is
    dropped (too slow) or the hub closes."""

    def __init__(self, project_id: int, size: int) -> None:
        self.project_id = project_id
        self.queue: asyncio.Queue[PageEvent | None] = asyncio.Queue(size)
        self.dropped = False

    def offer(self, event: PageEvent) -> bool:
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            return False
        return True

    def end(self) -> None:
        """Make the iteration end at once (the queue may be full: empty it first)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def next(self, timeout: float | None = None) -> PageEvent | None:
        """The next event; None when the viewer is done. Raises TimeoutError."""
        return await asyncio.wait_for(self.queue.get(), timeout)


class Feed:
    """A project's upstream subscription and its viewers."""

    def __init__(self, hub: StreamHub, project_id: int) -> None:
        self.hub = hub
        self.project_id = project_id
        self.viewers: set[Viewer] = set()
        self.connections = 0  # upstream connections opened (1 + reconnects)
        self.text_parts: dict[str, int] = {}  # text part id -> its length so far
        self.messages: set[str] = set()
        self.task: asyncio.Task | None = None
        self.stop_timer: asyncio.TimerHandle | None = None
        self.files_sent_at = float("-inf")
        self.files_timer: asyncio.TimerHandle | None = None

    def broadcast(self, event: PageEvent) -> None:
        for viewer in list(self.viewers):
            if not viewer.offer(event):
                logger.info("project %s: a viewer fell behind; dropped", self.project_id)
                viewer.dropped = True
                self.viewers.discard(viewer)
                viewer.end()
        if not self.viewers:
            self.hub._schedule_stop(self)

    async def run(self) -> None:
        delay = RETRY_MIN_SECONDS
        while True:
            try:
                upstream = await self.hub.locate(self.project_id)
                if upstream is None:  # not running (yet): look again soon
                    await asyncio.sleep(NOT_RUNNING_POLL_SECONDS)
                    continue
                connected = False
                async for event in self.hub.open_stream(upstream):
                    if event.type == CONNECTED:
                        self.connections += 1
                        connected = True
                        delay = RETRY_MIN_SECONDS
                    for page_event in self.translate(event, upstream.session_id):
                        if page_event is FILES:
                            self.files_changed()
                        else:
                            self.broadcast(page_event)
                if connected:
                    continue  # the server ended a working stream (a dispose): at once
            except asyncio.CancelledError:
                raise
            except OpenCodeError as exc:
                logger.debug("project %s: event stream: %s", self.project_id, exc)
            except Exception:
                logger.exception("project %s: event stream failed", self.project_id)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    def files_changed(self) -> None:
        """Send FILES now, or once the quiet time since the last one has passed."""
        if self.files_timer is not None:
            return  # one is due already: it covers this change too
        loop = asyncio.get_running_loop()
        wait = self.files_sent_at + FILES_EVERY - loop.time()
        if wait <= 0:
            self._send_files()
        else:
            self.files_timer = loop.call_later(wait, self._send_files)

    def _send_files(self) -> None:
        self.files_timer = None
        self.files_sent_at = asyncio.get_running_loop().time()
        self.broadcast(FILES)

    def translate(self, event: Event, session_id: str) -> list[PageEvent]:
        if event.type == CONNECTED:
            # The first connection, or a new one after a gap in which events were lost.
            self.text_parts.clear()
            return [RELOAD]
        if event.type in _FILE_EVENTS:
            return [FILES]  # the server's own folder: one project's, whatever session
        if event.session_id != session_id:
            return []
        props = event.properties
        if event.type == "message.part.delta":
            part_id = props.get("partID")
            delta = props.get("delta")
            if props.get("field") != "text" or part_id not in self.text_parts:
                return []
            if not isinstance(delta, str) or not delta:
                return []
            start = self.text_parts[part_id]
            self.text_parts[part_id] = start + len(delta)
            data = {"message": props.get("messageID"), "part": part_id, "start": start}
            return [PageEvent("delta", json.dumps({**data, "text": delta}))]
        if event.type == "message.part.updated":
            part = props.get("part") if isinstance(props.get("part"), dict) else {}
            if part.get("type") == "text" and not part.get("synthetic") and part.get("id"):
                self.text_parts[part["id"]] = len(part.get("text") or "")
            state = part.get("state") if isinstance(part.get("state"), dict) else {}
            if part.get("type") == "tool" and state.get("status") in ("completed", "error"):
                return [FILES]  # a shell command may have written files the watcher missed
            return []
        if event.type == "message.updated":
            info = props.get("info") if isinstance(props.get("info"), dict) else {}
            message_id = info.get("id")
            if not isinstance(message_id, str):
                return []
            new = message_id not in self.messages
            self.messages.add(message_id)
            completed = (info.get("time") or {}).get("completed")
            return [RELOAD] if new or completed or info.get("error") else []
        if event.type == "session.status":
            status = (props.get("status") or {}).get("type")
            return [PageEvent("status", "idle" if status == "idle" else "busy")]
        if event.type == "session.idle":
            return [PageEvent("status", "idle"), RELOAD]
        if event.type in ("session.error", "message.removed", "message.part.removed"):
            return [RELOAD]
        return []


class StreamHub:
    """Every project feed of one event loop (one per web process under ASGI)."""

    def __init__(
        self,
        *,
        locate: Locate | None = None,
        open_stream: OpenStream | None = None,
        queue_size: int = QUEUE_SIZE,
        linger: float = LINGER_SECONDS,
    ) -> None:
        self.locate: Locate = locate or locate_upstream
        self.open_stream: OpenStream = open_stream or open_upstream
        self.queue_size = queue_size
        self.linger = linger
        self.feeds: dict[int, Feed] = {}

    def subscribe(self, project_id: int) -> Viewer:
        feed = self.feeds.get(project_id)
        if feed is None:
            feed = self.feeds[project_id] = Feed(self, project_id)
            feed.task = asyncio.get_running_loop().create_task(
                feed.run(), name=f"doce-events-{project_id}"
            )
        if feed.stop_timer is not None:
            feed.stop_timer.cancel()
            feed.stop_timer = None
        viewer = Viewer(project_id, self.queue_size)
        feed.viewers.add(viewer)
        return viewer

    def unsubscribe(self, viewer: Viewer) -> None:
        feed = self.feeds.get(viewer.project_id)
        if feed is None:
            return
        feed.viewers.discard(viewer)
        if not feed.viewers:
            self._schedule_stop(feed)

    def _schedule_stop(self, feed: Feed) -> None:
        if feed.stop_timer is None:
            loop = asyncio.get_running_loop()
            feed.stop_timer = loop.call_later(self.linger, self._stop_if_unwatched, feed)

    def _stop_if_unwatched(self, feed: Feed) -> None:
        feed.stop_timer = None
        if feed.viewers or self.feeds.get(feed.project_id) is not feed:
            return
        del self.feeds[feed.project_id]
        if feed.files_timer is not None:
            feed.files_timer.cancel()
        if feed.task is not None:
            feed.task.cancel()

    async def close(self) -> None:
        """Stop every feed and end every viewer (tests; process shutdown)."""
        feeds, self.feeds = list(self.feeds.values()), {}
        for feed in feeds:
            for timer in (feed.stop_timer, feed.files_timer):
                if timer is not None:
                    timer.cancel()
            for viewer in feed.viewers:
                viewer.end()
            if feed.task is not None:
                feed.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feed.task

    async def events(self, project_id: int) -> AsyncIterator[bytes]:
        """A viewer's SSE body: a reload first (the page may have missed events since
        it was rendered), then the feed's events, and a keep-alive comment when quiet."""
        viewer = self.subscribe(project_id)
        try:
            yield b"retry: 2000\n\n" + RELOAD.encode()
            while True:
                try:
                    event = await viewer.next(KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if event is None:
                    return
                yield event.encode()
        finally:
            self.unsubscribe(viewer)


# One hub per event loop: uvicorn runs one loop per process; tests run several loops.
_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StreamHub] = weakref.WeakKeyDictionary()


def hub() -> StreamHub:
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = StreamHub()
    return found


def _upstream(project_id: int) -> Upstream | None:
    # Outside any request: drop a connection the database has closed meanwhile.
    close_old_connections()
    project = Project.objects.filter(pk=project_id).first()
    if project is None or project.status != Project.Status.RUNNING:
        return None
    state = services.runtime_state(project)
    if state is None or not state.active or not project.bootstrap_session_id:
        return None
    return Upstream(
        base_url=state.base_url,
        password=str(project.server_password),
        directory=state.directory,
        session_id=project.bootstrap_session_id,
    )


async def locate_upstream(project_id: int) -> Upstream | None:
    """The running server of a project and its session, or None (not running yet)."""
    return await sync_to_async(_upstream)(project_id)


def open_upstream(upstream: Upstream) -> AsyncIterator[Event]:
    return event_stream(upstream.base_url, upstream.password, directory=upstream.directory)
