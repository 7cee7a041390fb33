"""The live transcript end to end: a real OpenCode server streams a reply from the stub
LLM in pieces, and an SSE client of doce (its ASGI application under uvicorn) receives
each piece as a delta, in order, while the reply is still being written."""

from __future__ import annotations

import json
import threading

import pytest

from bench.stream import (
    SSEClient,
    prompt,
    running_project,
    serve_asgi,
    session_cookie,
    wait_until,
)
from bench.stub_llm import StubLLM
from tests.integration.conftest import released

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PIECES = ["Once ", "upon ", "a ", "time ", "a ", "bakery ", "opened."]


def test_deltas_reach_the_page_stream_in_order_before_the_reply_is_done(alice, tmp_path):
    last_piece = threading.Event()  # the stub holds the reply's end until this is set
    with (
        StubLLM(chunks=PIECES, chunk_interval=0.2, hold_last_chunk=last_piece) as stub,
        released(last_piece),
        running_project(owner=alice, stub=stub, data_dir=tmp_path / "project") as project,
        serve_asgi() as url,
        SSEClient(f"{url}/projects/{project.pk}/stream/", session_cookie(alice)) as sse,
    ):
        # The viewer's own reload, then the hub's once its upstream is connected.
        wait_until(lambda: len(sse.received("reload")) >= 2, timeout=30, what="the upstream")
        prompt(project, "Tell me a story")

        def text(events) -> str:
            return "".join(json.loads(e.data)["text"] for e in events)

        # Live: all but the last piece reach the page while the stub holds that one back.
        wait_until(
            lambda: text(sse.received("delta")) == "".join(PIECES[:-1]),
            timeout=60,
            what=f"the reply but its last piece, as deltas (error: {sse.error!r})",
        )
        assert len(stub.emitted()) == len(PIECES) - 1
        last_piece.set()
        deltas = wait_until(
            lambda: (d := sse.received("delta")) and text(d) == "".join(PIECES) and d,
            timeout=60,
            what=f"the whole reply as deltas (error: {sse.error!r})",
        )
        wait_until(
            lambda: any(e.data == "idle" for e in sse.received("status")),
            timeout=30,
            what="the idle status",
        )
        events = sse.received()
    assert sse.error is None
    bodies = [json.loads(e.data) for e in deltas]
    assert len({body["part"] for body in bodies}) == 1
    # In order, each from where the last ended.
    assert [b["start"] for b in bodies] == [
        sum(len(b2["text"]) for b2 in bodies[:i]) for i in range(len(bodies))
    ]
    # Every delta came before the reply was done (the idle status).
    assert len(deltas) >= 3  # piece by piece, not one batch at the end
    idle_at = next(e.at for e in events if e.name == "status" and e.data == "idle")
    assert deltas[-1].at <= idle_at
    # The page is told to re-read the finished transcript.
    assert any(e.name == "reload" and e.at >= deltas[-1].at for e in events)
    page_text = "".join(e.data for e in events)
    assert str(project.server_password) not in page_text
