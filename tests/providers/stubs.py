"""A stand-in for providers' HTTP APIs (OpenRouter, Anthropic, OpenAI, Google, Groq, a
custom endpoint) on 127.0.0.1: answers what a test sets, records what it was sent."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class ProviderAPI:
    """``answer(status, body)`` sets what every GET gets; ``delay`` stalls it."""

    def __init__(self) -> None:
        self.status = 200
        self.body: Any = {"data": [{"id": "model-1"}]}
        self.delay = 0.0
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"api": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> ProviderAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, status: int, body: Any = None) -> None:
        self.status = status
        self.body = body if body is not None else {}

    def reject(self, message: str = "Invalid API key provided") -> None:
        self.answer(401, {"error": {"message": message, "type": "authentication_error"}})

    def clear(self) -> None:
        with self._lock:
            self.seen.clear()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A key check hangs up once it has the status (it never reads a body it does not
        # need): the reset that follows is not an error worth a traceback.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    api: ProviderAPI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        with self.api._lock:
            self.api.seen.append(
                Seen("GET", self.path, {k.lower(): v for k, v in self.headers.items()})
            )
        if self.api.delay:
            time.sleep(self.api.delay)
        body = self.api.body
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            self.send_response(self.api.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass


class RawServer:
    """A bare TCP server on 127.0.0.1: every connection is answered by ``script(conn,
    stop)`` in its own thread (``stop`` is set when the test leaves the ``with``), for
    peers that are not well-behaved HTTP servers: tricklers, other protocols."""

    def __init__(self, script) -> None:
        self.script = script
        self.stop = threading.Event()
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> RawServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._listener.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            self.script(conn, self.stop)


def read_request(conn: socket.socket) -> bytes:
    """The request's head (a key check sends no body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
