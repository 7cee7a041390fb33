"""The local runtime: each OpenCode server is a child process on 127.0.0.1, inside the
sandbox of ``sandbox.py`` (bubblewrap + pasta) unless the operator turned it off.

The server runs in its own process group (so its helpers stop with it) with a minimal
environment of its own. Before signalling anything the runtime checks that the pid is
still the same server (pids get reused): same create time, an ``opencode serve``
command line on the recorded port, its workspace as its working directory.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from django.conf import settings

from doce.opencode import binary as opencode_binary
from doce.opencode.runtimes import exits, sandbox_limits, sandbox_plan
from doce.opencode.runtimes.base import (
    MARKER,
    MAX_AUTH_FILE_BYTES,
    PREVIEW_PORT_ENV,
    Layout,
    Runtime,
    RuntimeFailure,
    RuntimeState,
    ServerSpec,
    free_port,
    server_env,
)
from doce.opencode.runtimes.config import write_opencode_config, write_private

logger = logging.getLogger(__name__)

# The servers this process spawned, until they exit: each has a thread that collects
# its exit status (no zombies, no "subprocess still running" warnings). Servers spawned
# by another process are handled through psutil alone.
_spawned: dict[int, subprocess.Popen] = {}
_spawned_lock = threading.Lock()
# Parent variables a server may see: enough to find tools and speak the locale.
_PASSED_THROUGH = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "SHELL")
_LOG_ROTATE_BYTES = 5 * 1024 * 1024
_LISTENING_TAIL_BYTES = 16 * 1024  # the start's lines are at the end of the log
# create_time comes from boot time plus clock ticks; readers can disagree by a little.
_CREATE_TIME_TOLERANCE = 1.0
_SERVER_RECORD = "server.json"
# How long a process may show an empty command line while exec loads it.
_EXEC_GRACE = 1.0


class LocalRuntime(Runtime):
    name = "local"

    def start(self, spec: ServerSpec) -> RuntimeState:
        binary = opencode_binary.find()
        if binary is None:
            raise RuntimeFailure(
                "the OpenCode binary was not found: run `make setup` or set DOCE_OPENCODE_BIN",
                retryable=False,
            )
        layout = spec.layout
        layout.prepare()
        self._stop_leftover(layout)
        write_opencode_config(spec)
        port = free_port(avoid=spec.reserved_ports)
        preview_port = free_port(avoid={port, *spec.reserved_ports})
        workspace = str(layout.workspace.resolve())
        extra = {name: os.environ[name] for name in _PASSED_THROUGH if name in os.environ}
        extra.setdefault("PATH", os.defpath)
        extra[PREVIEW_PORT_ENV] = str(preview_port)  # the site's dev server listens there
        env = server_env(home=str(layout.home.resolve()), password=spec.password, extra=extra)
        command = [str(binary), "serve", "--hostname", "127.0.0.1", "--port", str(port)]
        sandbox_limits.stop_reason_clear(layout)  # an earlier server's
        if sandbox_plan.enabled():
            command = sandbox_plan.command(
                spec, binary=binary, port=port, serve=command, preview_port=preview_port
            )
        else:
            sandbox_limits.require(sandboxed=False)
        with _open_log(layout.log_file) as log:
            process = subprocess.Popen(
                command,
                cwd=workspace,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own session and process group
                close_fds=True,
                umask=0o077,  # its database, sessions and logs are the user's alone
            )
        _collect_when_done(process, data_dir=str(layout.data_dir))
        try:
            started_at = psutil.Process(process.pid).create_time()
        except psutil.NoSuchProcess:
            started_at = None  # exited at once; wait_healthy reports it with the log
        state = RuntimeState(
            runtime=self.name,
            data_dir=str(layout.data_dir),
            port=port,
            directory=workspace,
            pid=process.pid,
            process_started_at=started_at,
            preview_port=preview_port,
        )
        write_private(layout.data_dir / _SERVER_RECORD, json.dumps(state.to_dict()))
        logger.info("started OpenCode server %s: pid %s, port %s", spec.name, process.pid, port)
        return state

    def stop(self, state: RuntimeState) -> RuntimeState:
        process = _own_process(state)
        if process is not None:
            _terminate(process)
        else:
            _reap(state.pid)
        record = state.layout.data_dir / _SERVER_RECORD
        with contextlib.suppress(OSError, ValueError):
            if json.loads(record.read_text()).get("pid") == state.pid:
                record.unlink()
        return RuntimeState(
            runtime=state.runtime,
            data_dir=state.data_dir,
            port=state.port,
            directory=state.directory,
            active=False,
        )

    def remove(self, state: RuntimeState) -> None:
        self.stop(state)
        data_dir = state.layout.data_dir
        # Only a folder a runtime prepared: a wrong path in a row must not delete more.
        if (data_dir / MARKER).is_file():
            shutil.rmtree(data_dir, ignore_errors=True)
        elif data_dir.exists():
            logger.warning("not removing %s: it has no %s marker", data_dir, MARKER)

    def is_alive(self, state: RuntimeState) -> bool:
        return _own_process(state) is not None

    def stop_reason(self, state: RuntimeState) -> str:
        return sandbox_limits.stop_reason(state.layout)

    def _listening(self, state: RuntimeState) -> Callable[[], bool]:
        """The server's log says it listens on its port (OpenCode prints ``opencode
        server listening on http://127.0.0.1:PORT``; the port is new at each start, so
        an earlier start's line in the same log does not count)."""
        line = f"listening on http://127.0.0.1:{state.port}".encode()

        def listening() -> bool:
            try:
                with open(state.layout.log_file, "rb") as handle:
                    handle.seek(0, os.SEEK_END)
                    handle.seek(max(0, handle.tell() - _LISTENING_TAIL_BYTES))
                    return line in handle.read()
            except OSError:
                return False

        return listening

    def auth_file_read(self, state: RuntimeState) -> bytes | None:
        data_dir = Path(state.data_dir).resolve()
        path = Layout(data_dir).auth_file
        try:
            if not path.resolve().is_relative_to(data_dir):
                raise ValueError("auth.json leads out of the server's folder")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
            with os.fdopen(fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_AUTH_FILE_BYTES:
                    raise ValueError("auth.json is not a plain file of a few credentials")
                return handle.read(MAX_AUTH_FILE_BYTES + 1)[:MAX_AUTH_FILE_BYTES]
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            logger.warning("%s: its auth.json is not read: %s", data_dir.name, exc)
            return None

    def can_serve(self, started: ServerSpec, wanted: ServerSpec) -> bool:
        """The sandbox lets a server reach only the host-side endpoints its spec named
        when it started: ``wanted`` may need no other."""
        if not sandbox_plan.enabled():
            return True
        have_ports, have_hosts = sandbox_plan.reach(started)
        need_ports, need_hosts = sandbox_plan.reach(wanted)
        return need_ports <= have_ports and need_hosts <= have_hosts

    def _stop_leftover(self, layout: Layout) -> None:
        """One server per folder: stop one a lost state still left running."""
        try:
            previous = RuntimeState.from_dict(
                json.loads((layout.data_dir / _SERVER_RECORD).read_text())
            )
        except (OSError, ValueError, TypeError):
            return
        if _own_process(previous) is not None:
            logger.warning("stopping a leftover OpenCode server, pid %s", previous.pid)
            self.stop(previous)


def _own_process(state: RuntimeState) -> psutil.Process | None:
    """The server process if ``state.pid`` is still this state's server, else None."""
    if not state.pid or state.process_started_at is None:
        return None
    try:
        process = psutil.Process(state.pid)
        if abs(process.create_time() - state.process_started_at) > _CREATE_TIME_TOLERANCE:
            return None  # the pid was reused
        if process.status() == psutil.STATUS_ZOMBIE:
            _reap(state.pid)
            return None
        command = _command_line(process)
        if "serve" not in command or not _has_port(command, state.port):
            return None
        with contextlib.suppress(psutil.AccessDenied):
            if Path(process.cwd()).resolve() != Path(state.directory).resolve():
                return None
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        _reap(state.pid)
        return None
    except psutil.AccessDenied:
        return None  # not ours to signal
    return process


def _command_line(process: psutil.Process) -> list[str]:
    """The process's arguments, waiting out the moment right after Popen returns when the
    kernel is still loading the new program and /proc shows an empty command line (on a
    busy machine a health wait took a starting server for a dead one)."""
    give_up = time.monotonic() + _EXEC_GRACE
    while not (command := process.cmdline()) and time.monotonic() < give_up:
        if process.status() == psutil.STATUS_ZOMBIE:
            break
        time.sleep(0.005)
    return command


def _has_port(command: list[str], port: int) -> bool:
    return (
        any(
            arg == "--port" and index + 1 < len(command) and command[index + 1] == str(port)
            for index, arg in enumerate(command)
        )
        or f"--port={port}" in command
    )


def _terminate(process: psutil.Process) -> None:
    """SIGTERM, SIGTERM again, then SIGKILL, to the server's process group.

    OpenCode ignores SIGTERM while its background npm install runs, hence the ladder.
    The group holds the server's helpers; a helper that left the group is signalled
    by pid, from the list taken before the first signal.
    """
    grace = settings.DOCE_OPENCODE_STOP_GRACE
    try:
        members = [process, *process.children(recursive=True)]
        group = process.pid if os.getpgid(process.pid) == process.pid else None
    except (psutil.NoSuchProcess, ProcessLookupError):
        _reap(process.pid)
        return
    for attempt, sig in enumerate((signal.SIGTERM, signal.SIGTERM, signal.SIGKILL)):
        alive = [member for member in members if _running(member)]
        if not alive:
            break
        if attempt:
            logger.warning("OpenCode pid %s outlived SIGTERM; sending %s", process.pid, sig.name)
        _signal(group, alive, sig)
        if _wait_gone(process.pid, alive, grace):
            break
    _reap(process.pid, timeout=1.0)
    survivors = [member.pid for member in members if _running(member)]
    if survivors:
        raise RuntimeFailure(f"processes {survivors} survived SIGKILL", retryable=True)


def _wait_gone(pid: int, members: list[psutil.Process], timeout: float) -> bool:
    """Wait until no member runs. A zombie counts as gone: when another process spawned
    the server only that parent can reap it (psutil.wait_procs would wait it out)."""
    deadline = time.monotonic() + timeout
    while True:
        _reap(pid)
        if not any(_running(member) for member in members):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _signal(group: int | None, members: list[psutil.Process], sig: signal.Signals) -> None:
    """One signal per process: the group at once, then any member outside the group
    (a second SIGTERM would count as the escalation step)."""
    if group is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, sig)
    for member in members:
        try:
            if group is not None and os.getpgid(member.pid) == group:
                continue
            member.send_signal(sig)  # psutil re-checks identity (create time) first
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _reap(pid: int | None, timeout: float = 0) -> None:
    """Collect the exit status of a server this process spawned (without waiting unless
    ``timeout``: the pid may belong to a running server that failed an identity check)."""
    child = _spawned.get(pid) if pid else None
    if child is None:
        return
    try:
        if timeout == 0:
            finished = child.poll() is not None
        else:
            child.wait(timeout=timeout)
            finished = True
    except subprocess.TimeoutExpired:
        finished = False
    if finished:
        with _spawned_lock:
            if _spawned.get(pid) is child:
                del _spawned[pid]


def _collect_when_done(process: subprocess.Popen, *, data_dir: str) -> None:
    """Collect the server's exit status as soon as it exits, in a thread of its own.
    Whoever stops it (this process, a web request or another worker, by pid), only its
    parent can collect it: left alone it stays a zombie under this process. The exit is
    then reported (``exits``): a server that died on its own is seen at once."""
    with _spawned_lock:
        _spawned[process.pid] = process

    def wait() -> None:
        returncode = process.wait()
        with _spawned_lock:
            if _spawned.get(process.pid) is process:
                del _spawned[process.pid]
        exits.server_exited(
            exits.ServerExit(
                runtime=LocalRuntime.name,
                pid=process.pid,
                data_dir=data_dir,
                returncode=returncode,
            )
        )

    threading.Thread(target=wait, name=f"opencode-{process.pid}-exit", daemon=True).start()


@contextlib.contextmanager
def _open_log(path: Path):
    """Append to the server's log (0600), keeping one previous file past 5 MB."""
    with contextlib.suppress(OSError):
        if path.stat().st_size > _LOG_ROTATE_BYTES:
            os.replace(path, path.with_suffix(".log.1"))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as handle:
        yield handle
