"""The site preview server: a small ASGI app (run by uvicorn through
``projects.preview_asgi``, on DOCE_PREVIEW_PORT or behind DOCE_PREVIEW_ORIGIN) that
serves ``/<preview token>/<path>`` from the project's workspace.

It runs on an origin other than doce's, so the agent's HTML and JavaScript never run
where they could act as the user. It reads no header at all for authority (browsers
send doce's cookies across ports of one host: they are ignored) and sets no cookie. The
token is the only capability; the bare origin and an unknown token answer a plain 404.
Files are opened through ``doce.safe_files``: beneath the workspace, regular files only,
bounded, streamed in chunks.
"""

from __future__ import annotations

import asyncio
import mimetypes
from pathlib import Path
from urllib.parse import unquote_to_bytes

from django.db import close_old_connections

from doce import safe_files
from projects import workspace

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


def _lookup(token: str) -> Path | None:
    # This thread's database connection may have outlived the server's patience.
    close_old_connections()
    return workspace.workspace_for_token(token)


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


async def _not_found(send) -> None:
    await _simple(send, 404, NOT_FOUND, b"text/plain; charset=utf-8")


class PreviewApp:
    """The ASGI callable. HTTP only; lifespan and WebSocket are refused."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] not in ("GET", "HEAD"):
            await _simple(send, 405, b"", b"text/plain", [(b"allow", b"GET, HEAD")])
            return
        # The raw path, so an encoded slash (%2f) stays inside its component and is
        # refused there, instead of becoming a separator.
        raw = (scope.get("raw_path") or scope["path"].encode()).split(b"?", 1)[0]
        try:
            segments = [unquote_to_bytes(part).decode() for part in raw.split(b"/")[1:]]
        except UnicodeDecodeError:
            segments = []
        token = segments[0] if segments else ""
        root = await asyncio.to_thread(_lookup, token) if token else None
        if root is None:
            await _not_found(send)
            return
        if len(segments) == 1:  # /<token>: relative links need the trailing slash
            await _redirect(send, raw + b"/")
            return
        parts = segments[1:]
        want_index = parts[-1] == ""
        try:
            opened = await asyncio.to_thread(_open, root, parts, want_index)
        except safe_files.IsFolder:
            await _redirect(send, raw + b"/")
            return
        except safe_files.Unsafe:
            if want_index and not any(parts):
                await _simple(send, 404, NOTHING_YET, b"text/html; charset=utf-8")
            else:
                await _not_found(send)
            return
        await self._stream(scope, send, opened, workspace.INDEX if want_index else parts[-1])

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
