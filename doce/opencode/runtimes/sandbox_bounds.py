"""The bounds of one sandboxed server, as the kernel enforces them (docs/sandbox.md,
"Bounds"). Standard library only: ``sandbox.py`` loads this file beside itself, and
doce's checks (``sandbox_plan.bounds_problems``) use the same detection.

- **cgroups** hold the whole tree the agent starts: the memory limit (no swap beyond
  it), the process count (``pids.max``) and the CPU (equal weights between servers,
  under one parent group per machine, plus a quota when the operator caps CPUs below
  the cores). cgroup v1 (one hierarchy per controller) and v2 (one unified hierarchy,
  in a subtree delegated to doce: systemd ``Delegate=yes``, a container with writable
  cgroups) are both found from ``/proc/self/mountinfo`` and ``/proc/self/cgroup``.
  Servers' groups live under ``doce-servers`` inside doce's own group, so they stay
  within whatever bounds doce itself was given.
- Reaching the memory bound stops the whole server (v2 ``memory.oom.group``; on v1 the
  supervisor sees the kernel's OOM kill and stops the rest): a tree with one random
  process killed is a broken server, and the user is told why.
- **rlimits**: ``RLIMIT_FSIZE`` (no file larger than the disk bound: writing past it
  fails at once) and no core files.
- **disk**: workspace and home together, measured by the supervisor every few seconds
  (``DiskWatch``); past the bound the server is stopped. Filesystem project quotas
  would be exact but need a filesystem mounted with them and root; a loop-mounted image
  per project needs root too. Measuring needs neither and the rlimit stops a single
  runaway file between two measurements.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import resource
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

MIB = 1024 * 1024
GIB = 1024 * MIB
PARENT = "doce-servers"  # the parent group of every server's group
LEAF = "doce-main"  # v2: where doce's own processes move when its group must delegate
CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
CPU_WEIGHT = 100  # v2 default: every server the same
CPU_SHARES = 1024  # v1 default: every server the same
EXIT_FILE = "sandbox-exit.json"
# The supervisor's exit codes when a bound stopped the server (70: not set up at all).
EXIT_CODES = {"memory": 81, "disk": 82}
DISK_CHECK_SECONDS = 5.0
# A measurement may take at most this share of one core (a tree of many small files).
DISK_CHECK_SHARE = 0.05


@dataclass
class Bounds:
    """What one server may use (0: not bounded). In the plan as a dict."""

    memory_bytes: int = 0
    pids: int = 0
    cpus: float = 0.0
    disk_bytes: int = 0
    required: bool = False  # DOCE_LIMITS=required: refuse to run unbounded
    exit_file: str = ""  # where the supervisor says why a bound stopped the server
    disk_check_seconds: float = DISK_CHECK_SECONDS

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Bounds:
        return cls(**data)


def human_bytes(value: int) -> str:
    """2 GiB, 768 MiB: how the user is told a bound."""
    if value >= GIB and value % GIB == 0:
        return f"{value // GIB} GiB"
    if value >= GIB:
        return f"{value / GIB:.1f} GiB"
    return f"{value // MIB} MiB"


def memory_message(bounds: Bounds) -> str:
    return f"it reached its memory bound of {human_bytes(bounds.memory_bytes)}"


def disk_message(bounds: Bounds) -> str:
    return f"its files reached their disk bound of {human_bytes(bounds.disk_bytes)}"


# --- finding the hierarchies ------------------------------------------------------------
@dataclass(frozen=True)
class Hierarchy:
    """Where this process's own group is, for some controllers."""

    version: int
    controllers: frozenset[str]
    own: Path  # this process's group, as a folder


def hierarchies(
    mountinfo: str | None = None, self_cgroup: str | None = None
) -> tuple[int, list[Hierarchy]]:
    """(1 or 2, the hierarchies to use): v1 where the memory controller is mounted as
    v1 (also on hybrid machines), else the unified v2 hierarchy; (0, []) when neither."""
    if mountinfo is None:
        mountinfo = _read("/proc/self/mountinfo")
    if self_cgroup is None:
        self_cgroup = _read("/proc/self/cgroup")
    paths_v1: dict[str, str] = {}
    path_v2 = None
    for line in self_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            path_v2 = parts[2]
        else:
            for name in parts[1].split(","):
                paths_v1[name] = parts[2]
    v1: list[Hierarchy] = []
    v2: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) < 3:
            continue
        fstype, options = after[0], after[2].split(",")
        root, mountpoint = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup":
            names = frozenset(name for name in options if name in CONTROLLERS)
            path = next((paths_v1[name] for name in names if name in paths_v1), None)
            if names and path is not None and (own := _inside(mountpoint, root, path)):
                v1.append(Hierarchy(1, names, own))
        elif fstype == "cgroup2" and path_v2 is not None:
            own = _inside(mountpoint, root, path_v2)
            if own is not None:
                v2.append(Hierarchy(2, frozenset(CONTROLLERS), own))
    if any("memory" in hierarchy.controllers for hierarchy in v1):
        return 1, v1
    if v2:
        return 2, v2[:1]
    return (1, v1) if v1 else (0, [])


def _inside(mountpoint: str, root: str, path: str) -> Path | None:
    """The folder of cgroup ``path`` in a hierarchy mounted at ``mountpoint`` (showing
    the subtree ``root``); None when that group is not visible there."""
    root = root.rstrip("/") or "/"
    if root != "/":
        if path != root and not path.startswith(root + "/"):
            return None
        path = path[len(root) :] or "/"
    return Path(mountpoint) / path.lstrip("/")


def _unescape(text: str) -> str:
    return text.replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")


def _read(path: str | Path) -> str:
    with contextlib.suppress(OSError):
        return Path(path).read_text()
    return ""


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


# --- one server's group -------------------------------------------------------------
class ServerGroup:
    """The cgroup(s) of one server: created with its limits, the sandbox's held child
    moved in, the OOM kills counted, removed when the server has ended.

    ``problems`` lists the bounds that could not be enforced (each with why); the caller
    decides whether that is fatal (``Bounds.required``)."""

    def __init__(self, name: str, bounds: Bounds, *, found=None, cpu_count: int | None = None):
        self.name = name
        self.bounds = bounds
        self.version, self.hierarchies = found if found is not None else hierarchies()
        self.cpu_count = cpu_count or os.cpu_count() or 1
        self.folders: dict[str, Path] = {}  # controller -> the server's group folder
        self.problems: list[str] = []

    # -- set-up
    def create(self) -> None:
        wanted = self._wanted()
        if not wanted:
            return
        if self.version == 0:
            self.problems += [
                f"{bound}: no cgroup hierarchy is mounted" for bound in wanted.values()
            ]
            return
        if self.version == 2:
            self._create_v2(wanted)
        else:
            self._create_v1(wanted)

    def _wanted(self) -> dict[str, str]:
        """controller -> the bound it enforces."""
        wanted = {}
        if self.bounds.memory_bytes:
            wanted["memory"] = "memory"
        if self.bounds.pids:
            wanted["pids"] = "processes"
        if self.bounds.cpus:
            wanted["cpu"] = "CPU"
        return wanted

    def _create_v1(self, wanted: dict[str, str]) -> None:
        for controller, bound in wanted.items():
            hierarchy = next((h for h in self.hierarchies if controller in h.controllers), None)
            if hierarchy is None:
                self.problems.append(f"{bound}: the cgroup v1 {controller} controller is absent")
                continue
            try:
                folder = _fresh_group(hierarchy.own / PARENT, self.name)
                self.folders[controller] = folder
                self._limit_v1(controller, folder)
            except OSError as exc:
                self.problems.append(f"{bound}: cgroup v1 {hierarchy.own}: {_why(exc)}")
                self.folders.pop(controller, None)

    def _limit_v1(self, controller: str, folder: Path) -> None:
        if controller == "memory":
            _write(folder / "memory.limit_in_bytes", str(self.bounds.memory_bytes))
            with contextlib.suppress(OSError):  # only with swap accounting
                _write(folder / "memory.memsw.limit_in_bytes", str(self.bounds.memory_bytes))
            with contextlib.suppress(OSError):
                _write(folder / "memory.swappiness", "0")
        elif controller == "pids":
            _write(folder / "pids.max", str(self.bounds.pids))
        elif controller == "cpu":
            _write(folder / "cpu.shares", str(CPU_SHARES))
            if self.bounds.cpus < self.cpu_count:
                _write(folder / "cpu.cfs_period_us", str(CPU_PERIOD_US))
                _write(folder / "cpu.cfs_quota_us", str(int(self.bounds.cpus * CPU_PERIOD_US)))

    def _create_v2(self, wanted: dict[str, str]) -> None:
        own = self.hierarchies[0].own
        base = own.parent if own.name == LEAF else own
        available = set(_read(base / "cgroup.controllers").split())
        missing = {c: b for c, b in wanted.items() if c not in available}
        for controller, bound in missing.items():
            self.problems.append(
                f"{bound}: the cgroup v2 {controller} controller is not delegated to {base}"
            )
        usable = [c for c in wanted if c in available]
        if not usable:
            return
        try:
            _delegate(base, usable)
            parent = base / PARENT
            parent.mkdir(exist_ok=True)
            _enable(parent, usable)
            folder = _fresh_group(parent, self.name)
            for controller in usable:
                self.folders[controller] = folder
            self._limit_v2(folder, usable)
        except OSError as exc:
            for controller in usable:
                self.problems.append(f"{wanted[controller]}: cgroup v2 {base}: {_why(exc)}")
            self.folders.clear()

    def _limit_v2(self, folder: Path, controllers: list[str]) -> None:
        if "memory" in controllers:
            _write(folder / "memory.max", str(self.bounds.memory_bytes))
            with contextlib.suppress(OSError):  # only with swap
                _write(folder / "memory.swap.max", "0")
            _write(folder / "memory.oom.group", "1")
        if "pids" in controllers:
            _write(folder / "pids.max", str(self.bounds.pids))
        if "cpu" in controllers:
            _write(folder / "cpu.weight", str(CPU_WEIGHT))
            if self.bounds.cpus < self.cpu_count:
                quota = int(self.bounds.cpus * CPU_PERIOD_US)
                _write(folder / "cpu.max", f"{quota} {CPU_PERIOD_US}")

    def add(self, pid: int) -> None:
        """Move ``pid`` (the sandbox's held child: nothing has forked from it yet) into
        every group; what it starts later is born inside."""
        for folder in set(self.folders.values()):
            _write(folder / "cgroup.procs", str(pid))

    # -- while it runs
    def oom_kills(self) -> int:
        folder = self.folders.get("memory")
        if folder is None:
            return 0
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        counts = _counters(_read(folder / name))
        return max(counts.get("oom_kill", 0), counts.get("oom_group_kill", 0))

    # -- the end
    def remove(self, timeout: float = 3.0) -> None:
        """Kill what is left inside (nothing, normally) and remove the groups."""
        for folder in set(self.folders.values()):
            _remove_group(folder, timeout)
        self.folders.clear()


def _counters(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "not writable by doce (delegate it: docs/sandbox.md, Bounds)"
    return exc.strerror or str(exc)


def _fresh_group(parent: Path, name: str) -> Path:
    """``parent/<name>-<supervisor pid>``, after removing groups of supervisors that are
    gone (one killed before it could clean up)."""
    parent.mkdir(exist_ok=True)
    with contextlib.suppress(OSError):
        for stale in parent.iterdir():
            owner = stale.name.rsplit("-", 1)[-1]
            if stale.is_dir() and owner.isdigit() and not _alive(int(owner)):
                with contextlib.suppress(OSError):
                    _remove_group(stale, 1.0)
    folder = parent / f"{name}-{os.getpid()}"
    folder.mkdir()
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_group(folder: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(pid) for pid in _read(folder / "cgroup.procs").split()]
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        try:
            folder.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise
        time.sleep(0.01)


def _enable(folder: Path, controllers: list[str]) -> None:
    enabled = set(_read(folder / "cgroup.subtree_control").split())
    wanted = [c for c in controllers if c not in enabled]
    if wanted:
        _write(folder / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))


def _delegate(base: Path, controllers: list[str], attempts: int = 20) -> None:
    """Enable ``controllers`` for the children of doce's own v2 group. A group with
    processes of its own cannot (the "no internal processes" rule): they move into a
    leaf, ``base/doce-main``, first, as systemd asks of a service with ``Delegate=yes``
    and as Docker-in-Docker does."""
    for _ in range(attempts):
        try:
            _enable(base, controllers)
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
        leaf = base / LEAF
        leaf.mkdir(exist_ok=True)
        for pid in _read(base / "cgroup.procs").split():
            with contextlib.suppress(ProcessLookupError, OSError):
                _write(leaf / "cgroup.procs", pid)
    _enable(base, controllers)


# --- rlimits -----------------------------------------------------------------------------
def apply_rlimits(bounds: Bounds) -> None:
    """In the sandbox's first process, before exec (inherited by everything)."""
    if bounds.disk_bytes:
        resource.setrlimit(resource.RLIMIT_FSIZE, (bounds.disk_bytes, bounds.disk_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def oom_score_adj_self(value: int = 1000) -> None:
    """The kernel's OOM killer takes this process (and what it starts) before doce's
    web, workers or database. Raising it needs no privilege."""
    with contextlib.suppress(OSError):
        _write(Path("/proc/self/oom_score_adj"), str(value))


# --- disk -----------------------------------------------------------------------------
def tree_bytes(paths: list[str]) -> int:
    """Disk space the files under ``paths`` take (allocated blocks; a hard-linked file
    once; symlinks not followed)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = list(paths)
    while stack:
        folder = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if info.st_nlink > 1 and not entry.is_dir(follow_symlinks=False):
                    key = (info.st_dev, info.st_ino)
                    if key in seen:
                        continue
                    seen.add(key)
                total += info.st_blocks * 512
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
    return total


class DiskWatch:
    """Measures ``paths`` in a thread of its own (a big tree takes a while), every
    ``interval`` seconds or longer, so measuring costs at most DISK_CHECK_SHARE of a
    core. ``over`` turns True once they take more than ``limit`` bytes."""

    def __init__(self, paths: list[str], limit: int, interval: float):
        self.paths, self.limit, self.interval = paths, limit, interval
        self.over = False
        self.used = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)

    def start(self) -> DiskWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.used = tree_bytes(self.paths)
            if self.used > self.limit:
                self.over = True
                return
            took = time.monotonic() - started
            self._stop.wait(max(self.interval, took / DISK_CHECK_SHARE))


# --- why a server ended ---------------------------------------------------------------
def exit_record_write(path: str, *, bound: str, message: str) -> None:
    if not path:
        return
    with contextlib.suppress(OSError):
        temporary = f"{path}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"bound": bound, "message": message}, handle)
        os.replace(temporary, path)


def exit_record_read(path: str | Path) -> str:
    """Why a bound stopped the server ("" when none did)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return ""
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else ""


def exit_record_clear(path: str | Path) -> None:
    with contextlib.suppress(OSError):
        Path(path).unlink()
