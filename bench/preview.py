"""Measuring the live preview: from the agent writing ``index.html`` (a bash tool call the
stub LLM asks for, run by a real OpenCode server in its sandbox) to a real browser showing
the new page in the project page's preview iframe (``manage.py bench_preview``).

The path measured: the file is written -> OpenCode's events (the tool part completed,
``file.watcher.updated``) -> doce's hub (projects.stream) sends ``files`` -> live.js sets
the iframe's ``src`` -> the preview server (another port) serves the file -> the frame
has loaded it. Times are the file's mtime and the frame's own navigation timing, both on
this machine's wall clock.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from django.conf import settings
from django.test import override_settings

from bench import stream as bench_stream
from projects.models import Project
from projects.preview_server import PreviewApp
from projects.services import project_client
from projects.workspace import project_workspace

CHROMIUM = os.environ.get("DOCE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROUND_TIMEOUT = 120.0


def commands(rounds: int) -> dict[str, str]:
    """The stub's commands: round ``i`` writes a page that says so."""
    return {
        f"round{i}": f"printf '<h1>%s</h1>' '{page_text(i)}' > index.html" for i in range(rounds)
    }


def page_text(round_: int) -> str:
    return f"Preview round {round_}"


@contextlib.contextmanager
def serve_preview() -> Iterator[int]:
    """The preview server (projects.preview_server) under uvicorn on a free port of
    127.0.0.1, in a thread, as rundoce runs it; yields the port."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        PreviewApp(),
        lifespan="off",
        log_level="warning",
        access_log=False,
        ws="websockets-sansio",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [listener]}, name="preview", daemon=True
    )
    thread.start()
    try:
        bench_stream.wait_until(
            lambda: server.started or not thread.is_alive(), timeout=30, what="the preview"
        )
        if not server.started:
            raise RuntimeError("the preview server did not start")
        yield listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


def framing(port: int):
    """Settings for doce's pages in this process: the preview is on ``port``, which
    their Content-Security-Policy may frame."""
    policy = dict(settings.CONTENT_SECURITY_POLICY)
    policy["DIRECTIVES"] = {**policy["DIRECTIVES"], "frame-src": [f"http://127.0.0.1:{port}"]}
    return override_settings(DOCE_PREVIEW_PORT=port, CONTENT_SECURITY_POLICY=policy)


@dataclass
class Round:
    written: float  # the file's mtime (time.time())
    reload_started: float  # the frame's navigation began
    shown: float  # the frame's document was loaded


_NAVIGATION = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  return [performance.timeOrigin, performance.timeOrigin + nav.domContentLoadedEventEnd];
}"""


def session_idle(project: Project) -> bool:
    with project_client(project) as client:
        status = client.session_status().get(project.bootstrap_session_id) or {}
    return status.get("type", "idle") == "idle"


def measure(project: Project, *, doce_url: str, preview_port: int, user, rounds: int):
    """Open the project page in Chromium and run the rounds; a Round each."""
    # Playwright is a dev dependency: only the benchmark needs it, so only here.
    from playwright.sync_api import sync_playwright

    measured: list[Round] = []
    index = project_workspace(project) / "index.html"
    cookie = bench_stream.session_cookie(user)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.add_cookies(
                [{"name": k, "value": v, "url": doce_url} for k, v in cookie.items()]
            )
            page = context.new_page()
            page.goto(f"{doce_url}/projects/{project.pk}/")
            page.wait_for_selector(
                "[data-live-stream][data-live=open]", state="attached", timeout=ROUND_TIMEOUT * 1000
            )
            preview = f"http://127.0.0.1:{preview_port}/{project.preview_token}/"
            for round_ in range(rounds):
                bench_stream.prompt(project, f"Change the page [[round{round_}]]")
                page.frame_locator("iframe[data-preview-url]").locator(
                    "h1", has_text=page_text(round_)
                ).wait_for(timeout=ROUND_TIMEOUT * 1000)
                frame = next(f for f in page.frames if f.url.startswith(preview))
                started_ms, shown_ms = frame.evaluate(_NAVIGATION)
                measured.append(
                    Round(
                        written=os.stat(index).st_mtime,
                        reload_started=started_ms / 1000,
                        shown=shown_ms / 1000,
                    )
                )
                bench_stream.wait_until(
                    lambda: session_idle(project), timeout=ROUND_TIMEOUT, what="an idle session"
                )
        finally:
            browser.close()
    return measured


def figures(measured: list[Round]) -> dict[str, dict[str, float]]:
    return {
        "reload": bench_stream.summary([r.reload_started - r.written for r in measured]),
        "shown": bench_stream.summary([r.shown - r.written for r in measured]),
    }
