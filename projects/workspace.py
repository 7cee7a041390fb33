"""A project's workspace as its owner sees it: the site preview's link (and a new one), the
file list, the text viewer and the zip download.

The workspace is written by the project's agent, which is untrusted: every file is
opened through ``doce.safe_files`` (resolved beneath the workspace by the kernel, regular
files only, bounded), never by joining paths. The preview itself is served by
``projects.preview_server``, on an origin other than doce's.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.http.request import split_domain_port

from doce import safe_files
from doce.opencode.runtimes import get_runtime
from doce.opencode.runtimes.base import Layout, RuntimeState
from projects.models import Project, is_preview_token, new_preview_token
from projects.preview_proxy import DevServer
from projects.services import project_data_dir, runtime_state

INDEX = "index.html"
MB = 1024 * 1024
FILE_LIST_LIMIT = 1000  # files the list shows
DOWNLOAD_FILE_LIMIT = 10_000  # files a zip holds
VIEW_MAX_BYTES = 1 * MB  # the viewer shows text files up to this size


def project_layout(project: Project) -> Layout:
    return Layout(Path(project.data_dir) if project.data_dir else project_data_dir(project.pk))


def project_workspace(project: Project) -> Path:
    return project_layout(project).workspace


def preview_max_bytes() -> int:
    return settings.DOCE_PREVIEW_MAX_FILE_MB * MB


# --- the preview link -------------------------------------------------------------------


TOKEN_PLACEHOLDER = "{token}"
DEFAULT_PORTS = {"http": 80, "https": 443}


def preview_subdomains() -> bool:
    """Whether every project's preview has an origin of its own (DOCE_PREVIEW_ORIGIN
    names ``{token}``: ``https://<token>.preview.example.com/<path>``), rather than a path
    on one shared origin (``/<token>/<path>``)."""
    return TOKEN_PLACEHOLDER in settings.DOCE_PREVIEW_ORIGIN


def preview_url(*, project: Project, request) -> str:
    """The absolute URL of the project's preview: its own subdomain of
    DOCE_PREVIEW_ORIGIN, a path on DOCE_PREVIEW_ORIGIN, or a path on the preview port of
    the host the page was asked on."""
    if preview_subdomains():
        return settings.DOCE_PREVIEW_ORIGIN.replace(TOKEN_PLACEHOLDER, project.preview_token) + "/"
    if settings.DOCE_PREVIEW_ORIGIN:
        base = settings.DOCE_PREVIEW_ORIGIN
    else:
        host, _port = split_domain_port(request.get_host())
        base = f"{request.scheme}://{host or '127.0.0.1'}:{settings.DOCE_PREVIEW_PORT}"
    return f"{base}/{project.preview_token}/"


def token_from_host(host: bytes) -> str | None:
    """The preview token a request's ``Host`` names with one origin per project: its
    first label, when the rest of it is DOCE_PREVIEW_ORIGIN's host and its port is the
    origin's (no port: the scheme's default). None otherwise. The inverse of
    ``preview_url``; the Host picks a token and is used for nothing else."""
    scheme, _, netloc = settings.DOCE_PREVIEW_ORIGIN.partition("://")
    pattern, _, port = netloc.partition(":")
    suffix = pattern.removeprefix(TOKEN_PLACEHOLDER)
    want_port = int(port) if port else DEFAULT_PORTS[scheme]
    try:
        asked = host.decode("ascii").lower()
    except UnicodeDecodeError:
        return None
    name, colon, asked_port = asked.partition(":")
    if colon and not (asked_port.isdigit() and asked_port.isascii() and len(asked_port) <= 5):
        return None
    if (int(asked_port) if colon else DEFAULT_PORTS[scheme]) != want_port:
        return None
    label, dot, rest = name.partition(".")
    if not dot or "." + rest != suffix or not is_preview_token(label):
        return None
    return label


def workspace_has_page(project: Project) -> bool:
    """Whether the workspace has an index.html the preview would serve."""
    try:
        safe_files.open_file(
            project_workspace(project), [INDEX], max_size=preview_max_bytes()
        ).close()
    except safe_files.Unsafe:
        return False
    return True


def preview_token_rotate(*, project: Project) -> None:
    """A new preview link: the old one shows nothing from now on."""
    project.preview_token = new_preview_token()
    project.save(update_fields=["preview_token", "updated_at"])


def workspace_for_token(token: str) -> Path | None:
    """The workspace a preview token opens, or None (unknown, or the project is going)."""
    target = preview_target(token)
    return target.workspace if target is not None else None


@dataclass(frozen=True)
class PreviewTarget:
    """What a preview token opens: the workspace, and the way to the project's dev
    server (``PORT`` inside its sandbox) while its server runs, else None."""

    workspace: Path
    dev: DevServer | None


def preview_target(token: str) -> PreviewTarget | None:
    """The project a preview token opens, or None (unknown, or the project is going).
    The dev server is only ever where its runtime says: a port of
    DOCE_SERVER_PORT_RANGE on 127.0.0.1 that the runtime recorded, or the socket in the
    project's own data folder: the preview proxies nowhere else."""
    if not is_preview_token(token):
        return None
    project = (
        Project.objects.filter(preview_token=token)
        .exclude(status=Project.Status.DELETING)
        .only("pk", "data_dir", "status", "runtime_state")
        .first()
    )
    if project is None:
        return None
    state = runtime_state(project) if project.status == Project.Status.RUNNING else None
    return PreviewTarget(workspace=project_workspace(project), dev=_dev_server(project, state))


def _dev_server(project: Project, state: RuntimeState | None) -> DevServer | None:
    if state is None or not state.active:
        return None
    try:
        found = get_runtime(state.runtime).dev_server(state)
    except ValueError:  # a runtime this doce does not know
        return None
    if found is None:
        return None
    port, socket = found
    if not isinstance(port, int):
        return None
    if socket is None:
        return DevServer(port) if port in settings.DOCE_SERVER_PORTS else None
    # The project's own data folder's socket, and no other.
    if socket != project_layout(project).dev_socket:
        return None
    return DevServer(port, socket)


# --- files, viewer, zip ---------------------------------------------------------------


def workspace_files(*, project: Project) -> tuple[list[safe_files.Entry], bool]:
    """The workspace's regular files (no symlink followed) and whether more exist."""
    try:
        return safe_files.walk_files(project_workspace(project), limit=FILE_LIST_LIMIT)
    except safe_files.Unsafe:
        return [], False


@dataclass(frozen=True)
class FileView:
    path: str
    size: int
    text: str | None  # None: binary, or too large to show
    reason: str = ""


def workspace_file_view(*, project: Project, path: str) -> FileView:
    """A file of the workspace for the read-only viewer. Raises safe_files.Unsafe for
    anything that is not a regular file beneath the workspace."""
    try:
        opened = safe_files.open_file(
            project_workspace(project), path.split("/"), max_size=VIEW_MAX_BYTES
        )
    except safe_files.TooLarge:
        return FileView(path=path, size=0, text=None, reason="too large to show here")
    with opened:
        data = opened.read_all()
    try:
        if b"\x00" in data:
            raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return FileView(path=path, size=len(data), text=None, reason="not a text file")
    return FileView(path=path, size=len(data), text=text)


class _Sink(io.RawIOBase):
    """Where zipfile writes: collects bytes for the response to take (not seekable, so
    zipfile writes data descriptors and never goes back)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._chunks.append(bytes(data))
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def workspace_zip(*, project: Project) -> Iterator[bytes]:
    """The workspace as a zip, streamed: each file read in chunks through safe_files;
    symlinks and special files skipped; at most DOCE_DOWNLOAD_MAX_MB of content (what
    did not fit is named in DOWNLOAD-NOTE.txt)."""
    root = project_workspace(project)
    try:
        entries, more = safe_files.walk_files(root, limit=DOWNLOAD_FILE_LIMIT)
    except safe_files.Unsafe:
        entries, more = [], False
    budget = settings.DOCE_DOWNLOAD_MAX_MB * MB
    left_out: list[str] = []
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in entries:
            try:
                opened = safe_files.open_file(root, entry.path.split("/"), max_size=budget)
            except safe_files.TooLarge:
                left_out.append(entry.path)
                continue
            except safe_files.Unsafe:
                continue  # changed into something else since the walk
            with opened:
                info = zipfile.ZipInfo(entry.path, _zip_time(opened.mtime))
                info.compress_type = zipfile.ZIP_DEFLATED
                with archive.open(info, "w", force_zip64=opened.size > 2**31) as target:
                    for chunk in opened.chunks():
                        target.write(chunk)
                        yield sink.take()
                budget -= opened.size
        if left_out or more:
            note = "Left out of this download (over its size bound):\n" + "".join(
                f"  {path}\n" for path in left_out
            )
            if more:
                note += f"Only the first {DOWNLOAD_FILE_LIMIT} files are included.\n"
            archive.writestr("DOWNLOAD-NOTE.txt", note)
    yield sink.take()


def _zip_time(mtime: float) -> tuple[int, int, int, int, int, int]:
    return max(time.localtime(mtime)[:6], (1980, 1, 1, 0, 0, 0))
