"""The preview in front of a project's dev server (projects.preview_proxy): with a fake
dev server listening on the port the project's runtime recorded, HTTP and WebSocket reach
it, without doce's cookies or Authorization, and its cookies never come back; with
nothing listening there, or a project that is not running, the static files are served;
no other port is ever asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from doce.opencode.runtimes.base import Layout, free_port
from doce.opencode.runtimes.docker import DEV_PORT
from projects import preview_proxy
from projects.models import Project
from projects.preview_server import PreviewApp
from projects.workspace import project_workspace
from tests.asyncio_helpers import run_coroutine
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


class FakeDevServer:
    """An ASGI dev server: answers HTTP with what it was asked (JSON), a cookie and a
    redirect on ``/away``; echoes WebSocket messages, with the subprotocol asked for."""

    def __init__(self) -> None:
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.seen.append({"type": scope["type"], "path": scope["path"], "headers": headers})
        if scope["type"] == "websocket":
            await receive()
            protocols = scope.get("subprotocols") or [None]
            await send({"type": "websocket.accept", "subprotocol": protocols[0]})
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                await send({"type": "websocket.send", "text": "echo:" + message["text"]})
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        answer = json.dumps(
            {
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode(),
                "body": body.decode(),
            }
        ).encode()
        extra = [(b"location", b"/elsewhere")] if scope["path"] == "/away" else []
        await send(
            {
                "type": "http.response.start",
                "status": 302 if extra else 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"set-cookie", b"sessionid=planted; Path=/"),
                    (b"strict-transport-security", b"max-age=31536000"),
                    (b"x-dev", b"yes"),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": answer})


@contextlib.contextmanager
def served(app, port: int = 0, *, unix: Path | None = None) -> Iterator[int]:
    """``app`` under uvicorn (WebSocket on) on 127.0.0.1:``port``, or on the Unix
    socket ``unix``, in a thread."""
    if unix is not None:
        listener = socket.socket(socket.AF_UNIX)
        listener.bind(str(unix))
    else:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, lifespan="off", log_level="warning", ws="websockets-sansio")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    wait_for(lambda: server.started or not thread.is_alive(), timeout=30, what="uvicorn")
    assert server.started, "uvicorn did not start"
    try:
        yield 0 if unix is not None else listener.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        listener.close()


@pytest.fixture
def site(project, tmp_path) -> Path:
    project.data_dir = str(tmp_path / "project")
    project.save(update_fields=["data_dir"])
    Layout(Path(project.data_dir)).prepare()
    root = project_workspace(project)
    (root / "index.html").write_text("<h1>Static bakery</h1>")
    return root


def running_with(project: Project, dev_port: int, *, status=Project.Status.RUNNING) -> None:
    project.status = status
    project.runtime_state = {
        "runtime": "local",
        "data_dir": project.data_dir,
        "port": 20001,
        "directory": "/w",
        "preview_port": dev_port,
    }
    project.save(update_fields=["status", "runtime_state"])


@pytest.fixture
def preview():
    with served(PreviewApp()) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.fixture
def dev_server():
    app = FakeDevServer()
    with served(app, free_port()) as port:
        app.port = port
        yield app


def test_http_reaches_the_dev_server_without_doces_credentials(project, site, preview, dev_server):
    running_with(project, dev_server.port)
    answer = httpx.get(
        f"{preview}/{project.preview_token}/src/main.js?v=3",
        headers={"authorization": "Bearer doce", "cookie": "sessionid=alice; csrftoken=x"},
        timeout=10,
    )
    assert answer.status_code == 200
    assert answer.json() == {"method": "GET", "path": "/src/main.js", "query": "v=3", "body": ""}
    assert answer.headers["x-dev"] == "yes"
    assert answer.headers["x-content-type-options"] == "nosniff"
    for header in ("set-cookie", "strict-transport-security"):
        assert header not in answer.headers
    seen = dev_server.seen[-1]["headers"]
    assert "cookie" not in seen and "authorization" not in seen
    assert seen["host"] == f"127.0.0.1:{dev_server.port}"
    assert project.preview_token not in json.dumps(dev_server.seen)


def test_posts_and_redirects_keep_to_the_preview(project, site, preview, dev_server):
    running_with(project, dev_server.port)
    base = f"{preview}/{project.preview_token}"
    posted = httpx.post(f"{base}/api/order", content=b"bread=2", timeout=10)
    assert posted.json()["body"] == "bread=2"
    away = httpx.get(f"{base}/away", timeout=10)
    assert away.status_code == 302
    assert away.headers["location"] == f"/{project.preview_token}/elsewhere"
    too_large = httpx.post(
        f"{base}/upload", content=b"x" * (preview_proxy.MAX_REQUEST_BYTES + 1), timeout=30
    )
    assert too_large.status_code == 413


def test_websocket_reaches_the_dev_server(project, site, preview, dev_server):
    running_with(project, dev_server.port)
    ws_url = preview.replace("http://", "ws://") + f"/{project.preview_token}/hmr?token=t"
    with ws_connect(
        ws_url,
        subprotocols=["vite-hmr"],
        additional_headers={"cookie": "sessionid=alice"},
        open_timeout=10,
    ) as ws:
        assert ws.subprotocol == "vite-hmr"
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
    seen = dev_server.seen[-1]
    assert seen["type"] == "websocket" and seen["path"] == "/hmr"
    assert "cookie" not in seen["headers"]


def test_nothing_listening_serves_the_static_files(project, site, preview):
    with socket.socket() as probe:  # a port of the range that nobody listens on
        probe.bind(("127.0.0.1", free_port()))
        port = probe.getsockname()[1]
    running_with(project, port)
    answer = httpx.get(f"{preview}/{project.preview_token}/", timeout=10)
    assert (answer.status_code, answer.text) == (200, "<h1>Static bakery</h1>")
    assert httpx.post(f"{preview}/{project.preview_token}/", timeout=10).status_code == 405
    ws_url = preview.replace("http://", "ws://") + f"/{project.preview_token}/"
    with pytest.raises(InvalidStatus):
        ws_connect(ws_url, open_timeout=10)


@pytest.mark.parametrize("status", [Project.Status.STOPPED, Project.Status.ERROR])
def test_a_project_not_running_is_never_proxied(project, site, preview, dev_server, status):
    running_with(project, dev_server.port, status=status)
    answer = httpx.get(f"{preview}/{project.preview_token}/", timeout=10)
    assert answer.text == "<h1>Static bakery</h1>"
    assert dev_server.seen == []


def test_only_a_port_of_the_server_range_is_ever_asked(project, site, preview, settings):
    app = FakeDevServer()
    with served(app) as port:  # an ephemeral port, outside DOCE_SERVER_PORT_RANGE
        assert port not in settings.DOCE_SERVER_PORTS
        running_with(project, port)
        answer = httpx.get(f"{preview}/{project.preview_token}/", timeout=10)
    assert answer.text == "<h1>Static bakery</h1>"
    assert app.seen == []


def test_unknown_tokens_reach_no_dev_server(project, site, preview, dev_server):
    running_with(project, dev_server.port)
    for path in ("/", "/guessed-token/", "/src/main.js"):
        answer = httpx.get(preview + path, timeout=10)
        assert (answer.status_code, answer.text) == (404, "Not found\n")
    with pytest.raises(InvalidStatus):
        ws_connect(preview.replace("http://", "ws://") + "/guessed-token/", open_timeout=10)
    assert dev_server.seen == []


# --- the docker runtime: the dev server behind the devport service's Unix socket -------


def running_in_docker(project: Project, data_dir: str) -> None:
    project.status = Project.Status.RUNNING
    project.runtime_state = {
        "runtime": "docker",
        "data_dir": data_dir,
        "port": 20001,
        "directory": "/workspace",
        "container_name": f"doce_{project.pk}_opencode",
        "compose_project": f"doce_{project.pk}",
    }
    project.save(update_fields=["status", "runtime_state"])


@pytest.fixture
def socket_dev_server(project, site):
    """The fake dev server on the project's ``Layout.dev_socket``, as devport's socat
    makes it (the dev server itself listens on DEV_PORT inside the namespace)."""
    dev_socket = Layout(Path(project.data_dir)).dev_socket
    dev_socket.parent.mkdir(mode=0o700)
    app = FakeDevServer()
    with served(app, unix=dev_socket):
        yield app


def test_docker_http_and_websocket_reach_the_dev_server_through_its_socket(
    project, site, preview, socket_dev_server
):
    running_in_docker(project, project.data_dir)
    base = f"{preview}/{project.preview_token}"
    answer = httpx.get(f"{base}/src/main.js?v=1", headers={"cookie": "sessionid=a"}, timeout=10)
    assert answer.status_code == 200
    assert answer.json()["path"] == "/src/main.js"
    assert "set-cookie" not in answer.headers
    seen = socket_dev_server.seen[-1]["headers"]
    assert seen["host"] == f"127.0.0.1:{DEV_PORT}" and "cookie" not in seen
    assert httpx.post(f"{base}/api", content=b"x=1", timeout=10).json()["body"] == "x=1"
    with ws_connect(base.replace("http://", "ws://") + "/hmr", open_timeout=10) as ws:
        ws.send("ping")
        assert ws.recv(timeout=10) == "echo:ping"
    assert socket_dev_server.seen[-1]["type"] == "websocket"


def test_docker_without_a_dev_server_serves_the_static_files(project, site, preview):
    running_in_docker(project, project.data_dir)  # no socket: devport not up yet
    answer = httpx.get(f"{preview}/{project.preview_token}/", timeout=10)
    assert (answer.status_code, answer.text) == (200, "<h1>Static bakery</h1>")
    dev_socket = Layout(Path(project.data_dir)).dev_socket
    dev_socket.parent.mkdir(mode=0o700)
    with socket.socket(socket.AF_UNIX) as forward:  # socat with nothing on PORT: it
        forward.bind(str(dev_socket))  # accepts, then closes at once
        forward.listen(8)
        closer = threading.Thread(target=lambda: forward.accept()[0].close(), daemon=True)
        closer.start()
        answer = httpx.get(f"{preview}/{project.preview_token}/", timeout=10)
        closer.join(timeout=10)
    assert not closer.is_alive(), "the preview never tried the socket"
    assert (answer.status_code, answer.text) == (200, "<h1>Static bakery</h1>")


def test_docker_only_the_projects_own_socket_is_ever_used(
    project, site, preview, socket_dev_server, tmp_path
):
    """A state naming another folder (another project's socket) reaches no dev server."""
    elsewhere = tmp_path / "other"
    Layout(elsewhere).dev_socket.parent.mkdir(parents=True)
    other = FakeDevServer()
    with served(other, unix=Layout(elsewhere).dev_socket):
        running_in_docker(project, str(elsewhere))
        answer = httpx.get(f"{preview}/{project.preview_token}/", timeout=10)
    assert answer.text == "<h1>Static bakery</h1>"
    assert other.seen == [] and socket_dev_server.seen == []


def test_socket_clients_are_pooled_per_socket_and_the_oldest_closed(monkeypatch, tmp_path):
    """One pooled client per dev server socket, at most SOCKET_CLIENTS of them: the
    least recently used is closed, the others are reused."""
    monkeypatch.setattr(preview_proxy, "SOCKET_CLIENTS", 2)
    a, b, c = (preview_proxy.DevServer(DEV_PORT, tmp_path / name) for name in "abc")

    async def scenario():
        first = preview_proxy._http(a)
        assert preview_proxy._http(b) is not first
        assert preview_proxy._http(a) is first  # reused; b is now the oldest
        second_b = preview_proxy._http(b)
        preview_proxy._http(c)  # a third: a goes (least recently used)
        await asyncio.gather(*preview_proxy._closing)
        return first, second_b, preview_proxy._http(b), preview_proxy._http(a)

    first_a, first_b, again_b, again_a = run_coroutine(scenario())
    assert first_a.is_closed and again_a is not first_a
    assert again_b is first_b and not first_b.is_closed
