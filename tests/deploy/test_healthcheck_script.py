"""docker/healthcheck.py: the web container is healthy only while /healthz answers 200.
docker/preview_healthcheck.py: the preview container while the preview server answers
below 500 for a token it must look up."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.asyncio_helpers import run_coroutine
from tests.deploy.sources import HEALTHCHECK, PREVIEW_HEALTHCHECK


@pytest.fixture
def healthcheck():
    spec = importlib.util.spec_from_file_location("doce_container_healthcheck", HEALTHCHECK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def healthz_server():
    """A stand-in for the web server (uvicorn) on loopback; ``server.status`` is what
    /healthz answers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            server.requests.append((self.path, self.headers["Host"]))
            # doce's public answer: the status and one {"ok": ...} per component.
            healthy = server.status == 200
            body = json.dumps(
                {
                    "status": "ok" if healthy else "error",
                    "database": {"ok": True},
                    "broker": {"ok": healthy},
                    "opencode": {"ok": True},
                    "sandbox": {"ok": True},
                    "keyring": {"ok": True},
                }
            ).encode()
            self.send_response(server.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.status = 200
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    ("allowed_hosts", "expected"),
    [
        ("doce.example.com,localhost", "doce.example.com"),
        (".example.com", "example.com"),
        ("*,doce.example.com", "doce.example.com"),
        ("*", "localhost"),
        ("", "localhost"),
    ],
)
def test_host_header_is_one_django_allows(healthcheck, allowed_hosts, expected):
    assert healthcheck.host_header(allowed_hosts) == expected


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_exit_code_follows_healthz(
    healthcheck, healthz_server, monkeypatch, capsys, status, exit_code
):
    healthz_server.status = status
    monkeypatch.setattr(
        healthcheck, "URL", f"http://127.0.0.1:{healthz_server.server_port}/healthz"
    )
    monkeypatch.setenv("ALLOWED_HOSTS", "doce.example.com")
    assert healthcheck.main() == exit_code
    assert healthz_server.requests == [("/healthz", "doce.example.com")]
    out = capsys.readouterr().out
    assert out.startswith(str(status)), "the report shows up in docker inspect"
    assert f'"broker": {{"ok": {"true" if status == 200 else "false"}}}' in out


def test_unreachable_server_is_unhealthy(healthcheck, monkeypatch, capsys):
    monkeypatch.setattr(healthcheck, "URL", "http://127.0.0.1:9/healthz")
    assert healthcheck.main() == 1
    assert "unreachable" in capsys.readouterr().out


@pytest.mark.django_db
@pytest.mark.parametrize(("broker_ok", "exit_code"), [(True, 0), (False, 1)])
def test_the_check_reads_doces_real_public_answer(
    healthcheck, live_server, monkeypatch, capsys, broker_ok, exit_code
):
    from doce import health

    if broker_ok:
        monkeypatch.setitem(health.CHECKS, "broker", lambda: {"ok": True})
    else:  # no worker in this test: make the failed round trip quick
        monkeypatch.setattr(health, "BROKER_ROUND_TRIP_TIMEOUT", 0.5)
    monkeypatch.setattr(healthcheck, "URL", f"{live_server.url}/healthz")
    monkeypatch.setenv("ALLOWED_HOSTS", "localhost")
    assert healthcheck.main() == exit_code
    status, _, body = capsys.readouterr().out.strip().partition(" ")
    assert status == ("200" if broker_ok else "503")
    report = json.loads(body)
    assert report["broker"] == {"ok": broker_ok}
    assert set(report) == {
        "status",
        "database",
        "broker",
        "opencode",
        "sandbox",
        "bounds",
        "keyring",
    }


# --- docker/preview_healthcheck.py -----------------------------------------------------
@pytest.fixture
def preview_healthcheck():
    spec = importlib.util.spec_from_file_location(
        "doce_container_preview_healthcheck", PREVIEW_HEALTHCHECK
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_preview_probe_token_is_well_formed_and_unused(preview_healthcheck):
    """Well formed, so the preview looks it up (a malformed one is refused before the
    database); never a real token (those are random)."""
    from projects.models import is_preview_token

    assert is_preview_token(preview_healthcheck.PROBE_TOKEN)


def test_the_preview_probe_names_the_token_in_the_path_by_default(preview_healthcheck):
    request = preview_healthcheck.probe_request("")
    assert request.full_url == f"http://127.0.0.1:8001/{preview_healthcheck.PROBE_TOKEN}/"
    assert not request.has_header("Host")
    request = preview_healthcheck.probe_request("https://preview.example.com")
    assert request.full_url.endswith(f"/{preview_healthcheck.PROBE_TOKEN}/")


@pytest.mark.parametrize(
    "origin",
    [
        "https://{token}.preview.example.com",
        "http://{token}.localhost:8001",
        "https://{token}.Preview.Example.com:8443/",
    ],
)
def test_the_preview_probe_names_the_token_in_the_host_with_one_origin_per_project(
    preview_healthcheck, settings, origin
):
    """The Host is one the preview server takes for the probe's token, so the probe
    reaches the database lookup in this mode too."""
    from projects import workspace

    settings.DOCE_PREVIEW_ORIGIN = origin.rstrip("/").lower()
    request = preview_healthcheck.probe_request(origin)
    assert request.full_url == "http://127.0.0.1:8001/"
    host = request.get_header("Host")
    assert workspace.token_from_host(host.encode()) == preview_healthcheck.PROBE_TOKEN


@pytest.mark.parametrize(("status", "exit_code"), [(404, 0), (200, 0), (500, 1), (503, 1)])
def test_the_preview_is_healthy_while_it_answers_below_500(
    preview_healthcheck, healthz_server, monkeypatch, capsys, status, exit_code
):
    healthz_server.status = status
    monkeypatch.setattr(
        preview_healthcheck, "URL", f"http://127.0.0.1:{healthz_server.server_port}"
    )
    monkeypatch.delenv("DOCE_PREVIEW_ORIGIN", raising=False)
    assert preview_healthcheck.main() == exit_code
    assert healthz_server.requests[0][0] == f"/{preview_healthcheck.PROBE_TOKEN}/"
    assert capsys.readouterr().out.strip() == str(status)


def test_an_unreachable_preview_is_unhealthy(preview_healthcheck, monkeypatch, capsys):
    monkeypatch.setattr(preview_healthcheck, "URL", "http://127.0.0.1:9")
    assert preview_healthcheck.main() == 1
    assert "unreachable" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_real_preview_answers_the_probe_404(preview_healthcheck, settings):
    """projects.preview_server itself: the probe's token is looked up and not found."""
    from projects.preview_server import PreviewApp

    settings.DOCE_PREVIEW_ORIGIN = ""
    request = preview_healthcheck.probe_request("")
    path = request.full_url.removeprefix(preview_healthcheck.URL)
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode()}
    run_coroutine(PreviewApp()(scope, receive, send))
    assert sent[0]["status"] == 404
