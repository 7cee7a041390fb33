"""The preview's way to a project's dev server (``npm run dev`` on ``PORT`` inside its
sandbox): HTTP and WebSocket, for ``projects.preview_server``.

It connects where ``projects.workspace.preview_target`` says and nowhere else
(``DevServer``): with the local runtime ``127.0.0.1:<the port the runtime recorded>``,
forwarded inward by pasta like the OpenCode port; with the docker runtime the Unix
socket in the project's data folder that the ``devport`` service forwards to ``PORT``
(``doce.opencode.runtimes.docker``). When nothing listens there (refused, or the
forward closing the connection at once) the caller serves the static files instead.

What the dev server is written by is the agent: untrusted. So nothing of doce's reaches
it (no cookie, no Authorization, no forwarding headers), and nothing of it reaches the
browser that could act on doce (no ``Set-Cookie``: cookies ignore ports, so a dev
server on the host of doce could otherwise set doce's session cookie), and it is
bounded: the request body (``MAX_REQUEST_BYTES``), the answer's size
(DOCE_PREVIEW_MAX_FILE_MB), the time to connect and between two reads, a WebSocket
message's size.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import httpx
from websockets.asyncio.client import connect as ws_connect
from websockets.asyncio.client import unix_connect as ws_unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

SOCKET_CLIENTS = 64  # pooled clients kept for dev servers behind a Unix socket
MAX_REQUEST_BYTES = 10 * 1024 * 1024
MAX_WS_MESSAGE_BYTES = 4 * 1024 * 1024
CONNECT_TIMEOUT = 2.0  # loopback: a dev server that does not accept in 2 s is not there
READ_TIMEOUT = 60.0  # between two reads (a dev server compiling a page takes a while)
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Request headers never passed on: doce's credentials, hop-by-hop ones, and whatever
# tells where the request came from (the dev server gets 127.0.0.1 as its own host).
_DROPPED_REQUEST = frozenset(
    {
        "cookie",
        "authorization",
        "proxy-authorization",
        "host",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-real-ip",
        "content-length",
        # The WebSocket handshake's own: the client library makes them.
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "origin",
    }
)
# Response headers never passed back: cookies, pins a browser keeps for the whole
# preview origin, hop-by-hop ones, and those the preview server sets itself.
_DROPPED_RESPONSE = frozenset(
    {
        "set-cookie",
        "set-cookie2",
        "strict-transport-security",
        "clear-site-data",
        "alt-svc",
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "x-content-type-options",
        "referrer-policy",
        "cross-origin-resource-policy",
        "cache-control",
    }
)


@dataclass(frozen=True)
class DevServer:
    """Where a project's dev server answers. ``port`` is the one it listens on (the
    ``Host`` it is sent); ``socket``, when set, is the way there (docker runtime),
    else ``127.0.0.1:port`` is."""

    port: int
    socket: Path | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"


class NotListening(Exception):
    """Nothing answers on the dev server's port: serve the static files."""


class TooLarge(Exception):
    """The request's body is over MAX_REQUEST_BYTES."""


_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_socket_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_closing: set[asyncio.Task] = set()


def _new_client(socket: Path | None = None) -> httpx.AsyncClient:
    """No proxy from the environment, no redirects followed, bounded waits."""
    return httpx.AsyncClient(
        transport=httpx.AsyncHTTPTransport(
            uds=str(socket) if socket is not None else None,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=20),
        ),
        trust_env=False,
        follow_redirects=False,
        timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT, pool=CONNECT_TIMEOUT),
    )


def _http(dev: DevServer) -> httpx.AsyncClient:
    """Pooled connections, per event loop (uvicorn runs one): one client for every
    dev server on 127.0.0.1, one per Unix socket (an httpx transport has one), the
    least recently used of those closed beyond SOCKET_CLIENTS."""
    loop = asyncio.get_running_loop()
    if dev.socket is None:
        client = _clients.get(loop)
        if client is None:
            client = _clients[loop] = _new_client()
        return client
    clients: OrderedDict[Path, httpx.AsyncClient] = _socket_clients.setdefault(loop, OrderedDict())
    client = clients.get(dev.socket)
    if client is None:
        client = clients[dev.socket] = _new_client(dev.socket)
        while len(clients) > SOCKET_CLIENTS:
            _, oldest = clients.popitem(last=False)
            closing = loop.create_task(oldest.aclose())
            _closing.add(closing)  # the loop keeps only a weak reference to a task
            closing.add_done_callback(_closing.discard)
    clients.move_to_end(dev.socket)
    return client


def request_headers(scope) -> list[tuple[bytes, bytes]]:
    return [
        (name, value)
        for name, value in scope.get("headers", [])
        if name.lower().decode("latin-1") not in _DROPPED_REQUEST
    ]


def response_headers(headers: httpx.Headers, *, prefix: bytes) -> list[tuple[bytes, bytes]]:
    """The dev server's headers, less the dropped ones; a redirect to one of its own
    absolute paths keeps the preview's ``prefix`` (``/<token>``)."""
    kept = []
    for name, value in headers.raw:
        lower = name.lower()
        if lower.decode("latin-1") in _DROPPED_RESPONSE:
            continue
        if lower == b"location" and value.startswith(b"/") and not value.startswith(b"//"):
            value = prefix + value
        kept.append((lower, value))
    return kept


async def read_body(receive) -> bytes:
    """The request's whole body, at most MAX_REQUEST_BYTES (TooLarge past that)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise TooLarge
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def http(
    scope,
    send,
    *,
    dev: DevServer,
    path: bytes,
    body: bytes,
    prefix: bytes,
    extra_headers,
    max_bytes: int,
) -> None:
    """Send the request to the dev server and stream its answer to the browser.
    NotListening when no dev server answers (nothing sent yet)."""
    client = _http(dev)
    url = httpx.URL(f"http://{dev.host}").copy_with(raw_path=path or b"/")
    request = client.build_request(
        scope["method"],
        url,
        headers=[*request_headers(scope), (b"host", dev.host.encode())],
        content=body,
    )
    try:
        response = await client.send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError, httpx.ReadError):
        # Refused (nothing on the port, no socket yet), or accepted by the forward (pasta,
        # socat) and closed at once because nothing listens inside the sandbox.
        raise NotListening from None
    try:
        headers = response_headers(response.headers, prefix=prefix)
        await send(
            {
                "type": "http.response.start",
                "status": response.status_code,
                "headers": [*headers, *extra_headers],
            }
        )
        sent = 0
        with contextlib.suppress(httpx.HTTPError):
            async for chunk in response.aiter_raw():
                sent += len(chunk)
                if sent > max_bytes:
                    break  # cut short: the browser sees a truncated answer
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await response.aclose()


async def websocket(scope, receive, send, *, dev: DevServer, path: bytes) -> None:
    """Bridge the browser's WebSocket (already asked for: ``websocket.connect`` is the
    next message) to the dev server's, for hot reload. NotListening when the dev server
    does not take it (the browser's is refused then)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    protocols = [p for p in scope.get("subprotocols", []) if p]
    uri = f"ws://{dev.host}{(path or b'/').decode('latin-1')}"
    options = {
        "additional_headers": [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request_headers(scope)
        ],
        "subprotocols": protocols or None,
        "open_timeout": CONNECT_TIMEOUT,
        "max_size": MAX_WS_MESSAGE_BYTES,
        "compression": None,
        "user_agent_header": None,
    }
    try:
        if dev.socket is not None:
            upstream = await ws_unix_connect(str(dev.socket), uri, **options)
        else:
            upstream = await ws_connect(uri, proxy=None, **options)
    except (OSError, InvalidHandshake, InvalidStatus, TimeoutError, EOFError):
        raise NotListening from None
    try:
        await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
        await _pump(receive, send, upstream)
    finally:
        await upstream.close()


async def _pump(receive, send, upstream) -> None:
    async def inward() -> None:  # browser -> dev server
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            data = data if data is not None else message.get("text")
            if data is not None:
                if len(data) > MAX_WS_MESSAGE_BYTES:
                    return
                await upstream.send(data)

    async def outward() -> None:  # dev server -> browser
        with contextlib.suppress(ConnectionClosed):
            async for data in upstream:
                if isinstance(data, bytes):
                    await send({"type": "websocket.send", "bytes": data})
                else:
                    await send({"type": "websocket.send", "text": data})
        with contextlib.suppress(Exception):
            await send({"type": "websocket.close", "code": 1000})

    tasks = [asyncio.ensure_future(inward()), asyncio.ensure_future(outward())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
