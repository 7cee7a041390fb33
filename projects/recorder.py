"""The recorder: keeps doce's copy of every running project's conversation (and its
usage) as it happens, whether or not anyone has the page open.

One process with an asyncio loop (``manage.py record``), started beside each project
worker when it is ready (``projects.tasks``) and dying with it. For each running project
it follows the server's ``/event`` stream and, when a reply finishes, a tool call ends,
the session goes idle or errs, and on every (re)connection (events of a gap may be
lost), reads the session's messages into doce's copy (``services.conversation_sync``;
idempotent, so several recorders on one machine do no harm). A stop reads them once more
(``services.server_stop``), so the copy has the server's last word.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Awaitable, Callable

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections

from doce.opencode.errors import OpenCodeError
from doce.opencode.events import CONNECTED, Event
from projects import services
from projects.models import Project
from projects.stream import OpenStream, Upstream, locate_upstream, open_upstream

logger = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # running projects are looked up this often
SETTLE_SECONDS = 0.2  # a burst of finishing events is read once, this long after the first
RETRY_MIN_SECONDS = 0.25
RETRY_MAX_SECONDS = 10.0


def settles(event: Event, session_id: str) -> bool:
    """Does ``event`` finish something worth keeping (a reply, a tool call, a turn)?"""
    if event.type == CONNECTED:
        return True
    if event.session_id != session_id:
        return False
    props = event.properties
    if event.type == "message.updated":
        info = props.get("info") if isinstance(props.get("info"), dict) else {}
        return info.get("role") == "user" or bool(
            (info.get("time") or {}).get("completed") or info.get("error")
        )
    if event.type == "message.part.updated":
        part = props.get("part") if isinstance(props.get("part"), dict) else {}
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        return part.get("type") in ("tool", "patch") and state.get("status") != "running"
    return event.type in ("session.idle", "session.error", "message.removed")


def _running_ids() -> set[int]:
    close_old_connections()
    return set(
        Project.objects.filter(status=Project.Status.RUNNING)
        .exclude(bootstrap_session_id="")
        .values_list("pk", flat=True)
    )


def _sync(project_id: int) -> None:
    close_old_connections()
    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        problem, _ = services.conversation_sync(project=project)
        if problem:
            logger.debug("project %s: conversation not read: %s", project_id, problem)


class Recorder:
    def __init__(
        self,
        *,
        locate: Callable[[int], Awaitable[Upstream | None]] = locate_upstream,
        open_stream: OpenStream = open_upstream,
        running: Callable[[], set[int]] = _running_ids,
        sync: Callable[[int], None] = _sync,
    ) -> None:
        self.locate = locate
        self.open_stream = open_stream
        self.running = sync_to_async(running)
        self.sync = sync_to_async(sync)
        self.follows: dict[int, asyncio.Task] = {}

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    ids = await self.running()
                except Exception:
                    logger.exception("recorder: running projects could not be listed")
                    ids = set(self.follows)
                for project_id in ids - set(self.follows):
                    self.follows[project_id] = asyncio.create_task(self.follow(project_id))
                for project_id in set(self.follows) - ids:
                    self.follows.pop(project_id).cancel()
                for project_id, task in list(self.follows.items()):
                    if task.done():  # ended by an error: start again
                        self.follows[project_id] = asyncio.create_task(self.follow(project_id))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), POLL_SECONDS)
        finally:
            for task in self.follows.values():
                task.cancel()
            await asyncio.gather(*self.follows.values(), return_exceptions=True)

    async def follow(self, project_id: int) -> None:
        delay = RETRY_MIN_SECONDS
        pending: asyncio.Task | None = None
        while True:
            upstream = await self.locate(project_id)
            if upstream is None:
                await asyncio.sleep(POLL_SECONDS)
                continue
            connected = False
            try:
                async for event in self.open_stream(upstream):
                    if event.type == CONNECTED:
                        connected, delay = True, RETRY_MIN_SECONDS
                    if settles(event, upstream.session_id) and (pending is None or pending.done()):
                        pending = asyncio.create_task(self._settled(project_id))
                if connected:
                    continue  # the server ended a working stream (a dispose): at once
            except OpenCodeError as exc:
                logger.debug("recorder: project %s: %s", project_id, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _settled(self, project_id: int) -> None:
        await asyncio.sleep(SETTLE_SECONDS)
        try:
            await self.sync(project_id)
        except Exception:
            logger.exception("recorder: project %s: the conversation was not kept", project_id)


_spawning = threading.Lock()
_process: subprocess.Popen | None = None


def recorder_spawn() -> subprocess.Popen:
    """The recorder as a process of its own (``manage.py record``) beside this worker,
    dying with it (once per worker). A process, not a thread: the worker's pool forks
    its children from this process, and a fork must not copy a running event loop."""
    global _process
    with _spawning:
        if _process is None or _process.poll() is not None:
            _process = subprocess.Popen(
                [sys.executable, str(settings.BASE_DIR / "manage.py"), "record"],
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 (before any thread of ours)
            )
        return _process


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def record_forever() -> None:
    """``manage.py record``: until SIGTERM or SIGINT."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await Recorder().run(stop)

    asyncio.run(main())
