"""One origin per project (DOCE_PREVIEW_ORIGIN=https://{token}.preview.example.com): the
preview server picks the project by the first label of ``Host`` and serves it from the
root of that origin (a dev server's ``/@vite/client`` included); any other Host, another
port, or none shows nothing. Without ``{token}`` the Host is ignored, as before."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from doce.opencode.runtimes.base import Layout, free_port
from projects.models import Project
from projects.preview_server import PreviewApp
from projects.workspace import preview_token_rotate, project_workspace
from tests.projects.test_preview_proxy import FakeDevServer, running_with, served
from tests.projects.test_preview_server import fetch

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = "https://{token}.preview.example.com"


@pytest.fixture
def site(project, tmp_path, settings) -> Path:
    settings.DOCE_PREVIEW_ORIGIN = ORIGIN
    project.data_dir = str(tmp_path / "project")
    project.save(update_fields=["data_dir"])
    Layout(Path(project.data_dir)).prepare()
    root = project_workspace(project)
    (root / "index.html").write_text("<h1>Bakery</h1>")
    (root / "about").mkdir()
    (root / "about" / "index.html").write_text("<h1>About</h1>")
    (root / "@vite").mkdir()
    (root / "@vite" / "client").write_text("STATIC CLIENT")
    (tmp_path / "secret.txt").write_text("SECRET")
    return root


def on(host: str, path: bytes = b"/", **kwargs) -> tuple[int, dict, bytes]:
    return fetch(path, headers=[(b"host", host.encode())], **kwargs)


def host_of(project: Project, port: str = "") -> str:
    return f"{project.preview_token}.preview.example.com{port}"


def test_the_projects_own_origin_serves_its_site_from_the_root(project, site):
    status, headers, body = on(host_of(project))
    assert (status, body) == (200, b"<h1>Bakery</h1>")
    assert headers["x-content-type-options"] == "nosniff" and "set-cookie" not in headers
    assert on(host_of(project), b"/about/")[2] == b"<h1>About</h1>"
    assert on(host_of(project), b"/@vite/client")[2] == b"STATIC CLIENT"
    assert on(host_of(project, ":443"), b"/")[0] == 200  # the scheme's port, named
    assert on(host_of(project).upper(), b"/")[0] == 200  # a host name has no case
    status, headers, _ = on(host_of(project), b"/about")
    assert (status, headers["location"]) == (308, "/about/")  # a path, never the Host
    assert on(host_of(project), b"//about")[0] == 404  # never a redirect to host "about"


def test_any_other_host_shows_nothing(project, site, bob):
    other = Project.objects.create(
        owner=bob, name="Other", prompt="x", current_model_provider_id="s", current_model_id="m"
    )
    token = project.preview_token
    for host in (
        "preview.example.com",
        f"{token}.preview.example.com:8443",  # another port
        f"{token}.preview.example.com:",
        f"{token}.preview.example.com:{'4' * 5000}",
        f"{token}.preview.example.com.",
        f"{token}.example.com",
        f"{token}.preview.example.com.evil.test",
        f"{token}.evil.test",
        f"x.{token}.preview.example.com",
        f"{token}x.preview.example.com",
        f"{token[:-1]}.preview.example.com",
        f"{other.preview_token}x.preview.example.com",
        "127.0.0.1:8001",
        "localhost",
        "",
    ):
        status, headers, body = on(host)
        assert (status, body) == (404, b"Not found\n"), host
        assert "set-cookie" not in headers
    assert fetch(b"/")[0] == 404  # no Host at all
    two = [(b"host", host_of(project).encode()), (b"host", b"preview.example.com")]
    assert fetch(b"/", headers=two)[0] == 404
    assert on("preview.example.com", f"/{token}/".encode())[0] == 404  # no shared origin


def test_a_new_link_retires_the_old_origin(project, site):
    old = host_of(project)
    preview_token_rotate(project=project)
    assert on(old)[0] == 404
    assert on(host_of(project))[0] == 200


def test_still_no_way_out_of_the_workspace(project, site):
    for path in (b"/../secret.txt", b"/%2e%2e/secret.txt", b"/%2e%2e%2fsecret.txt", b"/%ff"):
        status, _, body = on(host_of(project), path)
        assert status == 404 and b"SECRET" not in body, path


def test_a_local_origin_on_the_preview_port(project, site, settings):
    settings.DOCE_PREVIEW_ORIGIN = "http://{token}.localhost:8001"
    assert on(f"{project.preview_token}.localhost:8001")[0] == 200
    for host in (f"{project.preview_token}.localhost", f"{project.preview_token}.localhost:8002"):
        assert on(host)[0] == 404, host


def test_path_mode_ignores_the_host(project, site, settings):
    settings.DOCE_PREVIEW_ORIGIN = ""
    token = project.preview_token
    assert on(host_of(project), f"/{token}/".encode())[2] == b"<h1>Bakery</h1>"
    assert on("anything.example", f"/{token}/about/".encode())[2] == b"<h1>About</h1>"
    assert on(host_of(project), b"/")[0] == 404
    assert on(host_of(project), b"/@vite/client")[0] == 404


def test_a_dev_servers_root_paths_and_hot_reload_on_the_projects_origin(project, site, settings):
    dev_server = FakeDevServer()
    with served(PreviewApp()) as port, served(dev_server, free_port()) as dev_port:
        settings.DOCE_PREVIEW_ORIGIN = f"http://{{token}}.localhost:{port}"
        running_with(project, dev_port)
        host = {"host": f"{project.preview_token}.localhost:{port}"}
        preview = f"http://127.0.0.1:{port}"
        answer = httpx.get(f"{preview}/@vite/client?v=1", headers=host, timeout=10)
        assert answer.json() == {
            "method": "GET",
            "path": "/@vite/client",
            "query": "v=1",
            "body": "",
        }
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert "set-cookie" not in answer.headers
        away = httpx.get(f"{preview}/away", headers=host, timeout=10)
        assert (away.status_code, away.headers["location"]) == (302, "/elsewhere")
        # Asked of 127.0.0.1 with the project's host name (this machine may not resolve it).
        loopback = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ws_connect(f"ws://{host['host']}/", sock=loopback, open_timeout=10) as ws:
            ws.send("ping")
            assert ws.recv(timeout=10) == "echo:ping"
        seen = dev_server.seen
        assert [s["path"] for s in seen] == ["/@vite/client", "/away", "/"]
        assert all(s["headers"]["host"] == f"127.0.0.1:{dev_port}" for s in seen)
        assert project.preview_token not in json.dumps(seen)
        stranger = httpx.get(f"{preview}/@vite/client", timeout=10)  # Host 127.0.0.1:<port>
        assert (stranger.status_code, stranger.text) == (404, "Not found\n")
    assert len(dev_server.seen) == 3
