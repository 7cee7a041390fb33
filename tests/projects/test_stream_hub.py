"""The live transcript's hub (projects.stream): one upstream per project fanned out to
every viewer, reconnects, slow viewers dropped, feeds stopped when nobody watches.

The upstream is a scripted fake (``Upstreams``); the hub's own code runs for real on an
asyncio loop."""

from __future__ import annotations

import asyncio
import json

from doce.opencode.errors import OpenCodeUnavailable
from doce.opencode.events import Event
from projects import stream
from projects.stream import PageEvent, StreamHub, Upstream
from tests.asyncio_helpers import run_coroutine

SESSION = "ses_1"
SECRET = "pw-upstream-secret"


def run(coro):
    return run_coroutine(asyncio.wait_for(coro, 20))


async def until(predicate, *, timeout: float = 5.0, what: str = "condition"):
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


def ev(type_: str, **properties) -> Event:
    return Event(type=type_, properties=properties)


def delta(text: str, part: str = "prt_1", session: str = SESSION) -> Event:
    return ev(
        "message.part.delta",
        sessionID=session,
        messageID="msg_a",
        partID=part,
        field="text",
        delta=text,
    )


def text_part(part: str = "prt_1", text: str = "", type_: str = "text", **extra) -> Event:
    return ev(
        "message.part.updated",
        sessionID=SESSION,
        part={"id": part, "messageID": "msg_a", "type": type_, "text": text, **extra},
    )


class Upstreams:
    """Fake OpenCode servers: each ``open`` is one connection, fed by the test with
    ``send``; ``end`` ends the current connection as a dispose does, ``fail`` breaks it."""

    def __init__(self) -> None:
        self.opened: list[int] = []  # project ids, one per connection
        self.closed = 0
        self.failures_left = 0
        self.queues: dict[int, asyncio.Queue] = {}

    async def locate(self, project_id: int) -> Upstream:
        return Upstream(f"http://127.0.0.1:{4000 + project_id}", SECRET, None, SESSION)

    async def open(self, upstream: Upstream):
        project_id = int(upstream.base_url.rsplit(":", 1)[1]) - 4000
        self.opened.append(project_id)
        if self.failures_left:
            self.failures_left -= 1
            raise OpenCodeUnavailable("connection refused")
        queue = self.queues[project_id] = asyncio.Queue()
        try:
            yield ev("server.connected")
            while (item := await queue.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self.closed += 1

    async def send(self, project_id: int, *events: Event) -> None:
        await until(lambda: project_id in self.queues, what="an upstream connection")
        for event in events:
            self.queues[project_id].put_nowait(event)

    def end(self, project_id: int) -> None:
        self.queues.pop(project_id).put_nowait(None)

    def fail(self, project_id: int) -> None:
        self.queues.pop(project_id).put_nowait(OpenCodeUnavailable("connection reset"))


def make_hub(upstreams: Upstreams, **options) -> StreamHub:
    return StreamHub(locate=upstreams.locate, open_stream=upstreams.open, **options)


async def take(viewer, count: int) -> list[PageEvent]:
    return [await viewer.next(5) for _ in range(count)]


def deltas(events: list[PageEvent]) -> list[str]:
    return [json.loads(e.data)["text"] for e in events if e.name == "delta"]


def test_every_viewer_gets_the_deltas_over_one_upstream_per_project():
    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams)
        first, second = hub.subscribe(1), hub.subscribe(1)
        other = hub.subscribe(2)
        await upstreams.send(1, text_part(), delta("Hel"), delta("lo"))
        for viewer in (first, second):
            events = await take(viewer, 3)
            assert events[0] == stream.RELOAD  # connected: the page re-reads once
            assert deltas(events) == ["Hel", "lo"]
            assert [json.loads(e.data)["start"] for e in events[1:]] == [0, 3]
        assert (await other.next(5)) == stream.RELOAD
        assert other.queue.empty()  # nothing of project 1 reaches project 2's page
        assert sorted(upstreams.opened) == [1, 2]
        await hub.close()

    run(scenario())


def test_only_the_text_of_the_projects_session_reaches_the_page():
    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams)
        viewer = hub.subscribe(1)
        await upstreams.send(
            1,
            text_part("prt_tool", type_="tool", state={"output": SECRET}),
            delta(SECRET, part="prt_tool"),  # not a text part
            text_part("prt_syn", synthetic=True),
            delta(SECRET, part="prt_syn"),  # a synthetic part
            delta(SECRET, part="prt_unknown"),  # a part never announced
            delta(SECRET, session="ses_other"),  # another session of the server
            ev("session.status", sessionID=SESSION, status={"type": "busy"}),
            text_part("prt_1"),
            delta("visible"),
            ev("session.idle", sessionID=SESSION),
        )
        events = await take(viewer, 5)
        assert [e.name for e in events] == ["reload", "status", "delta", "status", "reload"]
        assert [e.data for e in events if e.name == "status"] == ["busy", "idle"]
        assert deltas(events) == ["visible"]
        assert all(SECRET not in e.encode().decode() for e in events)
        await hub.close()

    run(scenario())


def test_new_and_finished_messages_ask_for_a_reload_others_do_not():
    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams)
        viewer = hub.subscribe(1)
        info = {"id": "msg_a", "role": "assistant", "time": {"created": 1}}
        await upstreams.send(
            1,
            ev("message.updated", sessionID=SESSION, info=info),  # new: reload
            ev("message.updated", sessionID=SESSION, info=info),  # same again: nothing
            ev("session.diff", sessionID=SESSION, diff=[]),  # not shown: nothing
            ev(
                "message.updated",
                sessionID=SESSION,
                info={**info, "time": {"created": 1, "completed": 2}},
            ),  # done: reload
        )
        assert [e.name for e in await take(viewer, 3)] == ["reload"] * 3
        await asyncio.sleep(0)  # (the events above were the last ones sent)
        assert viewer.queue.empty()
        await hub.close()

    run(scenario())


def test_a_dispose_reconnects_at_once_and_a_failure_with_back_off(monkeypatch):
    monkeypatch.setattr(stream, "RETRY_MIN_SECONDS", 0.01)

    async def scenario():
        upstreams = Upstreams()
        upstreams.failures_left = 2  # the server is down for two attempts
        hub = make_hub(upstreams)
        viewer = hub.subscribe(1)
        assert (await viewer.next(5)) == stream.RELOAD
        assert upstreams.opened == [1, 1, 1]
        upstreams.end(1)  # a dispose ends the stream
        assert (await viewer.next(5)) == stream.RELOAD  # reconnected: events may be lost
        upstreams.fail(1)  # the server restarts
        assert (await viewer.next(5)) == stream.RELOAD
        await upstreams.send(1, text_part(), delta("after"))
        assert deltas([await viewer.next(5)]) == ["after"]
        assert hub.feeds[1].connections == 3
        await hub.close()

    run(scenario())


def test_the_upstream_stops_when_the_last_viewer_has_been_gone_a_while():
    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams, linger=0.05)
        first, second = hub.subscribe(1), hub.subscribe(1)
        await first.next(5)
        hub.unsubscribe(first)
        await asyncio.sleep(0.1)
        assert 1 in hub.feeds and upstreams.closed == 0  # one viewer is still there
        hub.unsubscribe(second)
        await until(lambda: upstreams.closed == 1, what="the upstream closed")
        assert hub.feeds == {}
        # A viewer that comes back within the linger keeps the same upstream.
        third = hub.subscribe(1)
        await third.next(5)
        hub.unsubscribe(third)
        fourth = hub.subscribe(1)
        await asyncio.sleep(0.1)
        assert upstreams.opened == [1, 1] and upstreams.closed == 1
        hub.unsubscribe(fourth)
        await until(lambda: upstreams.closed == 2, what="the upstream closed again")

    run(scenario())


def test_a_slow_viewer_is_dropped_and_does_not_hold_up_the_others():
    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams, queue_size=4)
        slow, quick = hub.subscribe(1), hub.subscribe(1)
        pieces = [f"p{i} " for i in range(20)]
        received: list[PageEvent] = []

        async def read_quickly():
            while len(deltas(received)) < len(pieces):
                received.append(await quick.next(5))

        reader = asyncio.create_task(read_quickly())
        await upstreams.send(1, text_part())
        for count, piece in enumerate(pieces, 1):
            await upstreams.send(1, delta(piece))
            # The quick reader keeps up; the slow one never reads.
            await until(lambda count=count: len(deltas(received)) == count, what="a delta")
        await asyncio.wait_for(reader, 5)
        assert deltas(received) == pieces
        assert slow.dropped and slow not in hub.feeds[1].viewers
        assert (await slow.next(5)) is None  # its stream ends; its page reconnects
        await hub.close()

    run(scenario())


def test_a_viewers_stream_starts_with_a_reload_and_unsubscribes_when_closed():
    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams, linger=60)
        body = hub.events(1)
        first = await body.__anext__()
        assert first.startswith(b"retry: ") and b"event: reload\n" in first
        await upstreams.send(1, text_part(), delta("a\nb"))
        chunks = [await body.__anext__() for _ in range(2)]
        assert chunks[0] == b"event: reload\ndata: \n\n"  # the upstream connected
        assert chunks[1].startswith(b"event: delta\ndata: {")
        assert json.loads(chunks[1].split(b"data: ", 1)[1])["text"] == "a\nb"
        assert len(hub.feeds[1].viewers) == 1
        await body.aclose()  # the page went away
        assert hub.feeds[1].viewers == set()
        await hub.close()

    run(scenario())


def test_the_upstream_address_never_shows_its_password():
    assert SECRET not in repr(Upstream("http://127.0.0.1:1", SECRET, None, SESSION))


def test_the_agents_file_changes_reach_the_page_coalesced(monkeypatch):
    """file.edited, the file watcher and a finished tool call tell the page to reload its
    preview; a burst (npm install writes thousands of files) is one event now and one
    after the quiet time, never one per file, and carries no file name."""
    monkeypatch.setattr(stream, "FILES_EVERY", 0.2)

    async def scenario():
        upstreams = Upstreams()
        hub = make_hub(upstreams)
        viewer = hub.subscribe(1)
        assert (await viewer.next(5)) == stream.RELOAD
        await upstreams.send(1, ev("file.edited", file="/w/index.html"))
        assert (await viewer.next(5)) == stream.FILES
        burst = [ev("file.watcher.updated", file=f"/w/n{i}", event="add") for i in range(300)]
        await upstreams.send(1, *burst)
        assert (await viewer.next(5)) == stream.FILES  # the trailing one of the burst
        done = {"status": "completed", "output": SECRET}
        await upstreams.send(1, text_part("prt_tool", type_="tool", state=done))
        assert (await viewer.next(5)) == stream.FILES
        assert viewer.queue.empty()
        assert stream.FILES.data == ""  # no path, no output
        await hub.close()

    run(scenario())
