"""The site preview server: a small ASGI app (run by uvicorn through
``projects.preview_asgi``, on DOCE_PREVIEW_PORT or behind DOCE_PREVIEW_ORIGIN) that
serves ``/<preview token>/<path>`` from the project's workspace, or, with one origin per
project (DOCE_PREVIEW_ORIGIN names ``{token}``), ``/<path>`` of the project whose token
is the first label of the request's ``Host``.

It runs on an origin other than doce's, so the agent's HTML and JavaScript never run
where they could act as the user. It reads no header for authority (browsers send
doce's cookies across ports of one host: they are ignored; ``Host`` only names the token,
and must be exactly a project's origin) and sets no cookie. The token is the only
capability; the bare origin and an unknown token answer a plain 404.
Files are opened through ``doce.safe_files``: beneath the workspace, regular files only,
bounded, streamed in chunks.

While the project's dev server listens on its preview port (``PORT`` in its sandbox),
HTTP and WebSocket requests go to it instead (``projects.preview_proxy``); when nothing
listens there, the static files are served.
"""

from __future__ import annotations

import asyncio
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote_to_bytes

from django.db import close_old_connections

from doce import safe_files
from projects import preview_proxy, workspace

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"cross-origin"),
    (b"cache-control", b"no-cache"),
]
NOT_FOUND = b"Not found\n"
NOTHING_YET = (
    b"<!doctype html><html><head><meta charset=utf-8><title>Nothing to show yet</title></head>"
    b"<body style='font-family:system-ui,sans-serif;color:#555;display:grid;place-items:center;"
    b"height:90vh;margin:0'><div><h1 style='font-weight:500'>Nothing to show yet</h1>"
    b"<p>The site appears here once the agent has written <code>index.html</code>.</p>"
    b"</div></body></html>"
)


def _lookup(token: str) -> workspace.PreviewTarget | None:
    # This thread's database connection may have outlived the server's patience.
    close_old_connections()
    return workspace.preview_target(token)


@dataclass(frozen=True)
class _Route:
    """Which site a request asks for, and where in it."""

    token: str
    raw: bytes  # the raw path as asked (no query): redirects add to it
    parts: list[str]  # the decoded components beneath the site's root; [] for /<token>
    site_path: bytes  # the raw path beneath the site's root, as a dev server sees it
    prefix: bytes  # what precedes the site's root: b"/<token>", or b"" on its own origin


def _route(scope) -> _Route | None:
    """The raw path's components, decoded one by one (so an encoded slash, %2f, stays
    inside its component and is refused there, instead of becoming a separator), and
    the token: the first component, or with one origin per project the first label of
    ``Host``. None: nothing to serve (no token, a Host of no project's origin)."""
    raw = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
    # Not "//x" either: a folder's redirect to "//x/" would send the browser to host x.
    if not raw.startswith(b"/") or raw.startswith(b"//"):
        return None
    try:
        segments = [unquote_to_bytes(part).decode() for part in raw.split(b"/")[1:]]
    except UnicodeDecodeError:
        return None
    if workspace.preview_subdomains():
        hosts = [value for name, value in scope.get("headers", []) if name.lower() == b"host"]
        token = workspace.token_from_host(hosts[0]) if len(hosts) == 1 else None
        if token is None:
            return None
        return _Route(token=token, raw=raw, parts=segments, site_path=raw, prefix=b"")
    token = segments[0]
    if not token:
        return None
    site_path = b"/" + raw.split(b"/", 2)[2] if raw.count(b"/") >= 2 else b"/"
    prefix = b"/" + raw.split(b"/", 2)[1]
    return _Route(token=token, raw=raw, parts=segments[1:], site_path=site_path, prefix=prefix)


def _upstream_path(scope, route: _Route) -> bytes:
    """What the dev server is asked for: the path beneath the site's root, with the query."""
    query = scope.get("query_string") or b""
    return route.site_path + (b"?" + query if query else b"")


def _open(root: Path, parts: list[str], want_folder_index: bool) -> safe_files.OpenedFile:
    return safe_files.open_file(
        root,
        parts,
        max_size=workspace.preview_max_bytes(),
        index=workspace.INDEX if want_folder_index else "",
    )


def _content_type(name: str) -> bytes:
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if kind is None or encoding is not None:  # .gz and the like: bytes, not text
        return b"application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "image/svg+xml"):
        return f"{kind}; charset=utf-8".encode()
    return kind.encode()


async def _simple(send, status: int, body: bytes, content_type: bytes, extra=()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *SECURITY_HEADERS,
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _redirect(send, location: bytes) -> None:
    await _simple(send, 308, b"", b"text/plain", [(b"location", location)])


async def _method_not_allowed(send) -> None:
    await _simple(send, 405, b"", b"text/plain", [(b"allow", b"GET, HEAD")])


async def _not_found(send) -> None:
    await _simple(send, 404, NOT_FOUND, b"text/plain; charset=utf-8")


class PreviewApp:
    """The ASGI callable: HTTP, and WebSocket to a dev server; lifespan is refused."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["method"] not in preview_proxy.METHODS:
            await _method_not_allowed(send)
            return
        route = _route(scope)
        target = await asyncio.to_thread(_lookup, route.token) if route else None
        if route is None or target is None:
            await _not_found(send)
            return
        if not route.parts:  # /<token>: relative links need the trailing slash
            await _redirect(send, route.raw + b"/")
            return
        if target.dev is not None and await self._proxied(scope, receive, send, target.dev, route):
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _method_not_allowed(send)
            return
        root = target.workspace
        parts = route.parts
        want_index = parts[-1] == ""
        try:
            opened = await asyncio.to_thread(_open, root, parts, want_index)
        except safe_files.IsFolder:
            await _redirect(send, route.raw + b"/")
            return
        except safe_files.Unsafe:
            if want_index and not any(parts):
                await _simple(send, 404, NOTHING_YET, b"text/html; charset=utf-8")
            else:
                await _not_found(send)
            return
        await self._stream(scope, send, opened, workspace.INDEX if want_index else parts[-1])

    async def _proxied(
        self, scope, receive, send, dev: preview_proxy.DevServer, route: _Route
    ) -> bool:
        """Answered by the dev server (True), or nothing listens there (False)."""
        try:
            body = await preview_proxy.read_body(receive)
        except preview_proxy.TooLarge:
            await _simple(send, 413, b"Too large\n", b"text/plain; charset=utf-8")
            return True
        try:
            await preview_proxy.http(
                scope,
                send,
                dev=dev,
                path=_upstream_path(scope, route),
                body=body,
                prefix=route.prefix,
                extra_headers=SECURITY_HEADERS,
                max_bytes=workspace.preview_max_bytes(),
            )
        except preview_proxy.NotListening:
            return False
        return True

    async def _websocket(self, scope, receive, send) -> None:
        """Hot reload: bridged to the project's dev server, or refused (403)."""
        route = _route(scope)
        target = await asyncio.to_thread(_lookup, route.token) if route else None
        if route is not None and target is not None and target.dev is not None:
            try:
                await preview_proxy.websocket(
                    scope,
                    receive,
                    send,
                    dev=target.dev,
                    path=_upstream_path(scope, route),
                )
                return
            except preview_proxy.NotListening:
                pass
        await send({"type": "websocket.close", "code": 1008})

    async def _stream(self, scope, send, opened: safe_files.OpenedFile, name: str) -> None:
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", _content_type(name)),
                        (b"content-length", str(opened.size).encode()),
                        *SECURITY_HEADERS,
                    ],
                }
            )
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            chunks = opened.chunks()
            while True:
                chunk = await asyncio.to_thread(next, chunks, b"")
                if not chunk:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            opened.close()
