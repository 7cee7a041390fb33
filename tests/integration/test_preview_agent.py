"""The site preview of what the agent wrote: the real OpenCode binary in its sandbox, a
real Celery worker, the stub LLM making the agent write ``index.html`` with a bash tool
call, and the real preview server process. The project page's data-preview-url (another
port) serves the page within a second of the file appearing; the bare origin and a
guessed token show nothing; another user sees neither the page nor the link."""

from __future__ import annotations

import os
import re
import time

import httpx
import pytest

from bench.stub_llm import StubLLM
from projects.workspace import project_workspace
from tests.integration.conftest import (
    pipeline_report,
    project_running,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PAGE = "<h1>Fresh bread every morning</h1>"
WRITE = f"printf '%s' '{PAGE}' > index.html"


def appeared(path, timeout: float) -> float:
    """Once ``path`` holds the page: its mtime (wall clock), when the agent wrote it."""

    def written() -> float | None:
        try:
            return os.stat(path).st_mtime if path.read_text() == PAGE else None
        except OSError:
            return None

    return wait_for(written, timeout=timeout, what=f"{path} to hold the page")


def test_the_agents_page_is_served_on_the_preview_port(
    preview_server, alice, bob, client, settings, celery_worker_process, cleanup_projects
):
    settings.DOCE_PREVIEW_PORT = preview_server
    with StubLLM(reply="Your bakery site is ready.", commands={"write": WRITE}) as stub:
        stub_connection(alice, stub)
        project = project_running(alice, "Build my bakery site [[write]]", celery_worker_process)
        index = project_workspace(project) / "index.html"
        written_at = appeared(index, timeout=120)

        client.force_login(alice)
        page = client.get(f"/projects/{project.pk}/", HTTP_HOST="127.0.0.1:8000")
        assert page.status_code == 200
        found = re.search(r'data-preview-url="([^"]+)"', page.content.decode())
        assert found, pipeline_report(project, celery_worker_process)
        url = found.group(1)
        assert url == f"http://127.0.0.1:{preview_server}/{project.preview_token}/"
        answer = httpx.get(url, timeout=10, cookies={k: m.value for k, m in client.cookies.items()})
        served_at = time.time()
        assert (answer.status_code, answer.text) == (200, PAGE)
        assert "set-cookie" not in answer.headers
        latency = served_at - written_at
        print(f"\npreview: file written -> served from the preview port in {latency * 1000:.0f} ms")
        # (A figure, not an assertion: `manage.py bench_preview` measures it.)
        # The agent's tool call did write it: its output goes back to the model a moment
        # after the file appeared.
        wait_for(lambda: len(stub.tool_outputs()) == 1, what="the tool's output at the model")

    origin = f"http://127.0.0.1:{preview_server}"
    guessed = "A" * len(project.preview_token)
    for path in ("/", "/index.html", f"/{guessed}/", f"/{guessed}/index.html"):
        nothing = httpx.get(origin + path, cookies={"sessionid": "x"}, timeout=10)
        assert (nothing.status_code, nothing.text) == (404, "Not found\n"), path
        assert PAGE not in nothing.text

    # Bob: no project page, so no link; and nothing of doce's hands it to him.
    client.force_login(bob)
    pages = ("/projects/", *(f"/projects/{project.pk}/{p}" for p in ("", "files/", "preview/")))
    for path in pages:
        answer = client.get(path, HTTP_HOST="127.0.0.1:8000")
        assert project.preview_token not in answer.content.decode(), path
    assert client.get(f"/projects/{project.pk}/").status_code == 404
    assert client.post(f"/projects/{project.pk}/preview/new-link/").status_code == 404
    project.refresh_from_db()
    assert project.preview_token in url  # bob's POST did not rotate it
