"""Open files of a folder that someone else controls, without ever leaving it.

A project's workspace is written by an untrusted agent, but its files are read by doce's
own, unsandboxed processes (the site preview, the file list, the zip download). The
agent may leave symlinks to ``/etc/passwd`` or to another project, FIFOs that would
block a reader forever, device nodes and huge sparse files there. So a path is never
resolved by string checks that could race with the agent: the kernel resolves it beneath
the folder (``openat2`` with ``RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
RESOLVE_NO_MAGICLINKS``), or, where ``openat2`` is missing (Linux before 5.6, seccomp
filters), one component at a time with ``O_NOFOLLOW`` relative to the folder already
opened. Every open is non-blocking (a FIFO opens at once), and only regular files of at
most a given size are handed out, checked with ``fstat`` on the open descriptor.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

CHUNK_SIZE = 64 * 1024
# Folders nobody wants to browse or download: dependencies and version control.
SKIPPED_FOLDERS = frozenset({"node_modules", ".git"})

_SYS_OPENAT2 = 437  # the same number on every architecture (asm-generic)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class Unsafe(Exception):
    """Not a file that may be served: missing, outside the folder, a symlink, a special
    file, or too large. ``reason`` says which, for logs and tests, never for the user."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TooLarge(Unsafe):
    """A regular file over the size bound."""


class IsFolder(Unsafe):
    """A folder, asked for without an index file name."""


class _OpenHow(ctypes.Structure):
    _fields_ = [
        ("flags", ctypes.c_uint64),
        ("mode", ctypes.c_uint64),
        ("resolve", ctypes.c_uint64),
    ]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_openat2_works: bool | None = None  # learned at the first call


def _openat2(dir_fd: int, path: str, flags: int) -> int:
    how = _OpenHow(
        flags=flags,
        mode=0,
        resolve=_RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS,
    )
    fd = _libc.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dir_fd),
        ctypes.c_char_p(os.fsencode(path)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)
    return fd


def _walk_open(dir_fd: int, parts: Sequence[str], flags: int) -> int:
    """The fallback: each folder opened relative to the previous one with O_NOFOLLOW, so
    a symlink anywhere on the way fails (ELOOP or ENOTDIR) instead of being followed."""
    current = os.dup(dir_fd)
    try:
        for part in parts[:-1]:
            following = os.open(part, _DIR_FLAGS, dir_fd=current)
            os.close(current)
            current = following
        return os.open(parts[-1], flags | os.O_NOFOLLOW, dir_fd=current)
    finally:
        os.close(current)


def _open_beneath(dir_fd: int, parts: Sequence[str], flags: int) -> int:
    global _openat2_works
    if _openat2_works is not False:
        try:
            fd = _openat2(dir_fd, "/".join(parts), flags)
        except OSError as exc:
            if exc.errno not in (errno.ENOSYS, errno.EPERM) or _openat2_works:
                raise
            _openat2_works = False  # no openat2 here (old kernel, seccomp): walk instead
        else:
            _openat2_works = True
            return fd
    return _walk_open(dir_fd, parts, flags)


def clean_parts(parts: Sequence[str]) -> list[str]:
    """The path's components, or Unsafe: no ``..``, ``.``, NUL, slash inside a component
    (an encoded ``%2f`` decoded by the caller) or absolute path. Empty ones are dropped."""
    cleaned = []
    for part in parts:
        if part == "":
            continue
        if part in (".", "..") or "/" in part or "\\" in part or "\x00" in part:
            raise Unsafe(f"component {part!r} is not allowed")
        cleaned.append(part)
    return cleaned


def open_root(root: Path) -> int:
    """A descriptor of the folder itself, refused if it is a symlink or missing."""
    try:
        return os.open(root, _DIR_FLAGS)
    except OSError as exc:
        raise Unsafe(f"root: {exc.strerror}") from None


@dataclass
class OpenedFile:
    """A regular file opened beneath the root: read it with ``chunks``, then ``close``
    (or use it as a context manager). ``size`` is what fstat said at open; no more is
    ever read, whatever the agent appends meanwhile."""

    fd: int
    size: int
    mtime: float
    name: str

    def chunks(self, chunk_size: int = CHUNK_SIZE) -> Iterator[bytes]:
        left = self.size
        while left > 0:
            data = os.read(self.fd, min(chunk_size, left))
            if not data:
                return
            left -= len(data)
            yield data

    def read_all(self) -> bytes:
        return b"".join(self.chunks())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def open_file(root: Path, parts: Sequence[str], *, max_size: int, index: str = "") -> OpenedFile:
    """Open ``root/parts...`` as a regular file of at most ``max_size`` bytes. A folder
    is answered with its ``index`` file when one is given (``index.html``), else IsFolder.
    Raises Unsafe (TooLarge for a file over the bound), never blocks."""
    parts = clean_parts(parts)
    root_fd = open_root(root)
    try:
        try:
            fd = _open_beneath(root_fd, parts, _OPEN_FLAGS) if parts else os.dup(root_fd)
        except OSError as exc:
            raise Unsafe(f"open: {exc.strerror}") from None
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            os.close(fd)
            if not index:
                raise IsFolder("a folder")
            return open_file(root, [*parts, index], max_size=max_size)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise Unsafe("not a regular file")
        if info.st_size > max_size:
            os.close(fd)
            raise TooLarge(f"{info.st_size} bytes is over the bound of {max_size}")
        # Sparse or not, a regular file is read through its descriptor from the start.
        os.set_blocking(fd, True)
        return OpenedFile(fd=fd, size=info.st_size, mtime=info.st_mtime, name=(parts or [""])[-1])
    finally:
        os.close(root_fd)


@dataclass(frozen=True)
class Entry:
    """A regular file of the folder, as the file list and the zip show it."""

    path: str  # relative, with "/" between components
    size: int
    mtime: float

    @property
    def modified(self) -> datetime:
        return datetime.fromtimestamp(self.mtime, tz=UTC)


def walk_files(root: Path, *, limit: int) -> tuple[list[Entry], bool]:
    """The folder's regular files (sorted by path), never following a symlink and
    skipping special files and ``SKIPPED_FOLDERS``; at most ``limit`` of them, and
    whether more were left out."""
    entries: list[Entry] = []
    root_fd = open_root(root)
    try:
        # fwalk opens each folder relative to its parent's descriptor and does not
        # follow symlinks: a link the agent swaps in mid-walk is not entered.
        for folder, dirnames, filenames, dir_fd in os.fwalk(".", dir_fd=root_fd):
            dirnames[:] = sorted(name for name in dirnames if name not in SKIPPED_FOLDERS)
            for name in sorted(filenames):
                try:
                    info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except OSError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue
                if len(entries) >= limit:
                    return entries, True
                relative = os.path.normpath(os.path.join(folder, name))
                entries.append(Entry(path=relative, size=info.st_size, mtime=info.st_mtime))
    finally:
        os.close(root_fd)
    entries.sort(key=lambda entry: entry.path)
    return entries, False
