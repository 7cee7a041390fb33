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
    """A stand-in for gunicorn on loopback; ``server.status`` is what /healthz answers."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            server.requests.append((self.path, self.headers["Host"]))
            body = json.dumps({"status": "ok" if server.status == 200 else "error"}).encode()
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
    assert str(status) in capsys.readouterr().out, "the report shows up in docker inspect"


def test_unreachable_server_is_unhealthy(healthcheck, monkeypatch, capsys):
    monkeypatch.setattr(healthcheck, "URL", "http://127.0.0.1:9/healthz")
    assert healthcheck.main() == 1
    assert "unreachable" in capsys.readouterr().out
