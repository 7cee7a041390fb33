"""docker/healthcheck.py: the web container is healthy only while /healthz answers 200."""

from __future__ import annotations

import importlib.util
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.deploy.sources import HEALTHCHECK


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
