"""In Chromium, the agent's reply appears on the project page piece by piece as OpenCode
streams it (the page's event stream, no re-read of the transcript while it grows), then
the finished reply is rendered by the server. doce is served by uvicorn (ASGI), with a
real OpenCode server and the stub LLM."""

from __future__ import annotations

import threading

import pytest

from bench.stream import running_project, serve_asgi
from bench.stub_llm import StubLLM
from tests.factories import DEFAULT_PASSWORD
from tests.integration.conftest import released

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PIECES = ["Once ", "upon ", "a ", "time ", "a ", "bakery ", "opened ", "its ", "doors."]
REPLY = "".join(PIECES)


def test_the_reply_appears_live_on_the_page(page, alice, tmp_path):
    last_piece = threading.Event()  # the stub holds the reply's end until this is set
    with (
        StubLLM(chunks=PIECES, chunk_interval=0.2, hold_last_chunk=last_piece) as stub,
        released(last_piece),
        running_project(owner=alice, stub=stub, data_dir=tmp_path / "project") as project,
        serve_asgi() as url,
    ):
        transcript_reads: list[str] = []
        page.on(
            "request",
            lambda request: "/transcript/" in request.url and transcript_reads.append(request.url),
        )
        page.goto(url + "/accounts/login/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", DEFAULT_PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/projects/")
        page.goto(f"{url}/projects/{project.pk}/")
        page.wait_for_selector("[data-live-stream][data-live=open]", state="attached")
        page.evaluate("window.__sameDocument = true")  # lost on a full page reload

        page.fill("textarea[name=text], input[name=text]", "Tell me a story")
        page.get_by_role("button", name="Send").click()

        agent = page.locator(".entry.role-assistant").last
        agent.filter(has_text="Once upon").wait_for(timeout=60_000)
        reads_then = len(transcript_reads)
        # The live entry (not yet the server's rendering) grows up to all but the last
        # piece, which the stub has not written: the text came through the event
        # stream, and nothing re-read the transcript meanwhile.
        live = page.locator('.entry.role-assistant[data-done="false"]')
        live.filter(has_text="Once upon a time a bakery opened its").wait_for(timeout=60_000)
        assert len(stub.emitted()) == len(PIECES) - 1
        assert len(transcript_reads) == reads_then
        last_piece.set()

        # Done: the server's rendering replaces the live one, once, with the whole text.
        page.locator('.entry.role-assistant[data-done="true"]', has_text=REPLY).wait_for(
            timeout=60_000
        )
        assert page.locator(".entry.role-assistant").count() == 1
        assert page.evaluate("window.__sameDocument") is True
        assert str(project.server_password) not in page.content()
