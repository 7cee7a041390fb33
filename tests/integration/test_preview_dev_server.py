"""A dev server inside the sandbox: the real OpenCode binary in its sandbox (bubblewrap and
pasta), the stub LLM making the agent run shell commands, the real preview server
process. The agent's shell has ``PORT`` (and its instructions say what it is for); while
nothing listens there the preview serves the static files; once the agent starts a
server on ``$PORT`` in the background, the preview shows that server's answer; once the
project's server is stopped, the static files again."""

from __future__ import annotations

import json
import re

import httpx
import pytest

from bench.stream import prompt, running_project
from bench.stub_llm import StubLLM
from projects import services as project_services
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

STATIC = "<h1>Static bakery</h1>"
DYNAMIC = "<h1>From the dev server</h1>"
COMMANDS = {
    "port": 'echo "port=$PORT"',
    "static": f"printf '%s' '{STATIC}' > index.html",
    # In the background, detached from the tool call's shell, as an agent runs
    # `npm run dev &`.
    "serve": (
        f"mkdir -p dev && printf '%s' '{DYNAMIC}' > dev/index.html && "
        '(setsid python3 -m http.server "$PORT" --bind 127.0.0.1 --directory dev '
        ">/dev/null 2>&1 &)"
    ),
}


def test_the_preview_shows_the_dev_server_while_one_listens(
    preview_server, alice, settings, tmp_path
):
    settings.DOCE_PREVIEW_PORT = preview_server
    with (
        StubLLM(reply="Done.", commands=COMMANDS) as stub,
        running_project(owner=alice, stub=stub, data_dir=tmp_path / "project") as project,
    ):
        state = project_services.runtime_state(project)
        assert state.preview_port in settings.DOCE_SERVER_PORTS
        assert state.preview_port != state.port
        url = f"http://127.0.0.1:{preview_server}/{project.preview_token}/"

        def run(name: str) -> str:
            before = len(stub.tool_outputs())
            prompt(project, f"Please [[{name}]]")
            wait_for(
                lambda: len(stub.tool_outputs()) > before,
                timeout=120,
                what=f"the agent's {name!r} command",
                explain=lambda: state.layout.log_tail(30),
            )
            wait_for(lambda: _idle(project), timeout=60, what="the session to be idle")
            return stub.tool_outputs()[-1]

        # The agent's shell has PORT, and its instructions say what it is for.
        assert re.search(rf"port={state.preview_port}\b", run("port"))
        system = json.dumps(stub.completions()[-1].body.get("messages", [])[:2])
        assert "PORT" in system and "dev server" in system

        # Nothing listens on PORT: the static files (pasta's forward accepts and closes).
        run("static")
        static = httpx.get(url, timeout=10)
        assert (static.status_code, static.text) == (200, STATIC)

        # A dev server on PORT, inside the sandbox: the preview shows its answer.
        run("serve")
        shown = wait_for(
            lambda: (a := httpx.get(url, timeout=10)).text == DYNAMIC and a,
            timeout=60,
            what="the dev server's answer on the preview",
        )
        assert shown.status_code == 200
        assert shown.headers["x-content-type-options"] == "nosniff"
        assert "set-cookie" not in shown.headers
        # Only through the preview: the port is the host's loopback only.
        assert httpx.get(f"http://127.0.0.1:{state.preview_port}/", timeout=10).text == DYNAMIC

    # The project's server is gone (and its dev server with its sandbox): static again.
    project.refresh_from_db()
    again = httpx.get(url, timeout=10)
    assert (again.status_code, again.text) == (200, STATIC)


def _idle(project) -> bool:
    with project_services.project_client(project) as client:
        status = client.session_status().get(project.bootstrap_session_id) or {}
    return status.get("type", "idle") == "idle"
