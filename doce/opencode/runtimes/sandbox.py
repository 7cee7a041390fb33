"""The sandbox every locally started OpenCode server runs in (docs/sandbox.md).

An OpenCode server runs a coding agent with a shell: untrusted code. doce starts it as

    python sandbox.py PLAN.json -- /path/to/opencode serve --hostname 127.0.0.1 --port P

and this file, run as a small supervisor (standard library only, so it starts in a few
milliseconds, without Django), puts the server inside:

- **bubblewrap** (``bwrap``): new user, PID, mount, IPC, UTS and network namespaces; a
  read-only view of ``/usr`` and the few ``/etc`` files a program needs, the OpenCode
  binary and the operator's plugin files read-only, and read-write only the server's own
  workspace and home; its own ``/proc`` (no other process, no other environment), a
  private ``/tmp``; every capability dropped, no new privileges; uid 1000 inside.
- **pasta** (Debian ``passt``) for the network namespace: outbound NAT to the internet,
  the server's port (and its dev server's, ``PORT``) forwarded inward from the host's
  127.0.0.1 only, and from the host's loopback nothing but the ports the plan allows
  (the user's own endpoints, the operator's ``DOCE_SANDBOX_ALLOW``). ``--no-map-gw``
  keeps the gateway address from reaching the host's loopback.
- Inside the namespace, before the server runs, ``unreachable`` routes for the host's
  own addresses, the other networks the host is attached to (where doce's database and
  broker live in a container deployment) and link-local addresses (cloud metadata),
  except the hosts the plan allows. The sandbox cannot change them: it has no
  capability.

- Bounds (``sandbox_bounds.py``): the held sandbox joins the server's cgroups (memory,
  processes, CPU) before it may start anything, with rlimits and an OOM score that
  makes the kernel pick an agent before doce; the supervisor watches the memory bound's
  OOM kills and the disk the server's files take, and stops the server when either is
  reached, with one line in the log, a record of why (``sandbox-exit.json``) and an
  exit code of its own (81 memory, 82 disk).

bwrap holds the server (``--block-fd``) until the network and the bounds are set up; if
any step fails, everything is stopped and the supervisor exits non-zero (70) with one
line in the server's log (fail closed). The supervisor lives as long as the server: it
stops pasta, which does not exit by itself when the namespace goes away, and the sandbox
dies with it (``--die-with-parent``); then it removes the server's cgroups.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__:
    from doce.opencode.runtimes import sandbox_bounds as bounds_lib
else:  # run as a script (python -I): the file beside this one, without Django
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "sandbox_bounds", Path(__file__).with_name("sandbox_bounds.py")
    )
    bounds_lib = importlib.util.module_from_spec(_spec)
    sys.modules["sandbox_bounds"] = bounds_lib  # its dataclasses look themselves up
    _spec.loader.exec_module(bounds_lib)

SANDBOX_UID = 1000
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"
# pasta answers DNS queries sent here with the host's own resolver (also when that is a
# loopback one: systemd-resolved, Docker's embedded DNS).
DNS_ADDRESS = "169.254.1.1"
LINK_LOCAL = "169.254.0.0/16"
# /etc files a program needs to run (libraries, TLS roots, time zone); all read-only.
ETC_FILES = (
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/alternatives",
    "/etc/nsswitch.conf",
    "/etc/ld.so.cache",
    "/etc/localtime",
    "/etc/mime.types",
)
SETUP_TIMEOUT = 10.0
STOP_GRACE = 2.0


@dataclass
class Plan:
    """What one sandbox gets. JSON in a 0600 file beside the server's folders."""

    workspace: str
    home: str
    port: int
    etc_dir: str  # synthesised passwd, group, hosts, resolv.conf
    read_only: list[str] = field(default_factory=list)  # the binary, plugin files
    allow_loopback_ports: list[int] = field(default_factory=list)
    allow_hosts: list[str] = field(default_factory=list)  # addresses past the blocks
    block_networks: list[str] = field(default_factory=list)  # beyond what is found
    tools: dict[str, str] = field(default_factory=dict)  # bwrap, pasta, nsenter, ip
    name: str = "server"  # names its cgroups
    bounds: dict | None = None  # sandbox_bounds.Bounds; None: unbounded
    preview_port: int | None = None  # the site's dev server (PORT), forwarded like port

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        return cls(**json.loads(text))


class SandboxError(Exception):
    """The sandbox could not be set up; the server must not run."""


# --- what the sandbox is made of -------------------------------------------------------
def write_etc(folder: Path) -> None:
    """passwd/group naming only the sandbox's users (no host account names), hosts with
    localhost only, and a resolver that pasta answers."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    files = {
        "passwd": "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        f"opencode:x:{SANDBOX_UID}:{SANDBOX_UID}:opencode:/nonexistent:/bin/bash\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        "group": f"root:x:0:\nopencode:x:{SANDBOX_UID}:\nnogroup:x:65534:\n",
        "hosts": "127.0.0.1 localhost\n::1 localhost ip6-localhost\n",
        "resolv.conf": f"nameserver {DNS_ADDRESS}\n",
    }
    for name, text in files.items():
        path = folder / name
        path.write_text(text)
        path.chmod(0o600)  # uid 1000 inside is the caller outside: it can read them
    folder.chmod(0o700)


def bwrap_args(plan: Plan, *, as_root: bool, info_fd: int, block_fd: int) -> list[str]:
    args = [
        plan.tools["bwrap"],
        "--unshare-all",  # user, pid, net, ipc, uts, cgroup namespaces
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "opencode",
        "--ro-bind",
        "/usr",
        "/usr",
        "--symlink",
        "usr/bin",
        "/bin",
        "--symlink",
        "usr/sbin",
        "/sbin",
        "--symlink",
        "usr/lib",
        "/lib",
        "--symlink",
        "usr/lib64",
        "/lib64",
    ]
    # Fresh /proc, /dev, /tmp first: the binds below may lie under /tmp (tests).
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/dev/shm"]  # noqa: S108
    for path in ETC_FILES:
        args += ["--ro-bind-try", path, path]
    for name in ("passwd", "group", "hosts", "resolv.conf"):
        args += ["--ro-bind", f"{plan.etc_dir}/{name}", f"/etc/{name}"]
    for path in plan.read_only:
        args += ["--ro-bind", path, path]
    args += [
        "--bind",
        plan.home,
        plan.home,
        "--bind",
        plan.workspace,
        plan.workspace,
        "--chdir",
        plan.workspace,
        "--remount-ro",
        "/",
        "--info-fd",
        str(info_fd),
        "--block-fd",
        str(block_fd),
    ]
    if as_root:
        # Not root inside. (Unprivileged, bwrap's own user namespace maps the caller to
        # uid 0 inside, with no capability: pasta can only join a namespace owned so.)
        args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    return args


def pasta_args(plan: Plan, child_pid: int, *, as_root: bool) -> list[str]:
    outward = ",".join(str(port) for port in plan.allow_loopback_ports) or "none"
    args = [
        plan.tools["pasta"],
        "--quiet",
        "--foreground",
        "--config-net",
        "--no-map-gw",  # the gateway address is not the host's loopback
        "--dns-forward",
        DNS_ADDRESS,
        "--tcp-ports",
        f"127.0.0.1/{plan.port}",  # doce reaches the server, from the host's loopback only
        *(  # the preview server reaches the site's dev server the same way
            ["--tcp-ports", f"127.0.0.1/{plan.preview_port}"] if plan.preview_port else []
        ),
        "--udp-ports",
        "none",
        "--tcp-ns",
        outward,  # the sandbox's loopback ports that reach the host's: only these
        "--udp-ns",
        "none",
    ]
    if as_root:
        # Joining the user namespace fails for a namespace with uid 1000 inside; root
        # joins the network namespace alone (and must not drop to nobody to do it).
        args += ["--runas", "0", "--netns", f"/proc/{child_pid}/ns/net"]
    else:
        args.append(str(child_pid))
    return args


def host_networks(ip: str = "ip") -> tuple[list[str], str | None]:
    """The host's own addresses (as /32, /128) and the networks of the interfaces that
    do not carry the default route; plus the name of the one that does (pasta copies
    it into the namespace)."""
    default_dev = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/net/route").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == "00000000":
                default_dev = fields[0]
                break
    found: list[str] = []
    result = subprocess.run(
        [ip, "-j", "address", "show", "scope", "global"],
        capture_output=True,
        text=True,
        timeout=5,
        check=True,
    )
    for link in json.loads(result.stdout or "[]"):
        for info in link.get("addr_info", []):
            if "local" not in info or "prefixlen" not in info:
                continue  # iproute2 lists lifetimes as entries of their own
            address = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}")
            found.append(str(ipaddress.ip_network(address.ip)))  # the address itself
            if link.get("ifname") != default_dev:
                found.append(str(address.network))
    return sorted(set(found)), default_dev


def blocked_networks(ip: str = "ip", extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """What a sandbox's routes make unreachable: the host's own addresses and the
    networks of its other interfaces (``host_networks``), link-local addresses (cloud
    metadata) and ``extra``. The docker runtime's containers get the same."""
    found, _ = host_networks(ip)
    return sorted({*found, LINK_LOCAL, *extra})


def route_script(plan: Plan, gateway: str | None) -> str:
    """``ip -batch`` lines: block the host's addresses and networks, link-local
    addresses and the gateway as a destination; route the DNS forwarder and allowed
    hosts past the blocks."""
    blocked = blocked_networks(plan.tools.get("ip", "ip"), plan.block_networks)
    lines = []
    for network in blocked:
        lines.append(f"route add unreachable {network}")
    if gateway:
        for host in [DNS_ADDRESS, *plan.allow_hosts]:
            if ":" not in host:
                # replace: an allowed host may be one of the host's own addresses,
                # blocked above as X/32 (an add would fail with "File exists").
                lines.append(f"route replace {host}/32 via {gateway}")
        # The gateway carries the traffic but is no destination: in a container
        # deployment it is the Docker host itself. Last: the kernel checks the next hop
        # of the routes above.
        if gateway not in plan.allow_hosts and f"{gateway}/32" not in blocked:
            lines.append(f"route add unreachable {gateway}/32")
    return "\n".join(lines) + "\n"


# --- the supervisor -------------------------------------------------------------------
def _pdeathsig() -> None:
    """In pasta's child: die with the supervisor, whatever kills it."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _read_child_pid(fd: int, deadline: float) -> int:
    data = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                break
            data += chunk
            with contextlib.suppress(ValueError):
                return int(json.loads(data)["child-pid"])
    raise SandboxError("bubblewrap did not start the sandbox (user namespaces off?)")


def _wait_loopback(child_pid: int, bwrap: subprocess.Popen, deadline: float) -> None:
    """Wait until bwrap has set up the namespace's loopback (127.0.0.1 on ``lo``, up).
    bwrap does that after it reports the child's pid; pasta, started meanwhile, brings
    ``lo`` up too, and the two netlink requests can collide ("bwrap: loopback: Failed
    RTM_NEWADDR"): bwrap then gives up and the server never starts."""
    table = Path(f"/proc/{child_pid}/net/fib_trie")
    while time.monotonic() < deadline:
        if bwrap.poll() is not None:
            raise SandboxError(f"bubblewrap exited ({bwrap.returncode}) while setting up")
        with contextlib.suppress(OSError):
            if "127.0.0.1" in table.read_text():
                return
        time.sleep(0.002)
    raise SandboxError("bubblewrap did not set up the sandbox's loopback in time")


def _default_gateway(child_pid: int, pasta: subprocess.Popen, deadline: float) -> str | None:
    """Wait for pasta to configure the namespace; its IPv4 default gateway."""
    route_file = Path(f"/proc/{child_pid}/net/route")
    while time.monotonic() < deadline:
        if pasta.poll() is not None:  # it will never configure it: say so now
            raise SandboxError(f"pasta exited ({pasta.returncode}) before it set up the network")
        with contextlib.suppress(OSError):
            for line in route_file.read_text().splitlines()[1:]:
                fields = line.split()
                if fields[1] == "00000000" and fields[0] != "lo":
                    raw = int(fields[2], 16)
                    return str(ipaddress.IPv4Address(raw.to_bytes(4, "little")))
        time.sleep(0.005)
    raise SandboxError("pasta did not configure the sandbox's network in time")


def _nsenter(plan: Plan, child_pid: int, *, as_root: bool) -> list[str]:
    command = [plan.tools["nsenter"], "--target", str(child_pid), "--net"]
    if not as_root:
        command += ["--user", "--preserve-credentials"]
    return command


def run(plan: Plan, command: list[str]) -> int:
    as_root = os.geteuid() == 0
    bounds = bounds_lib.Bounds.from_dict(plan.bounds) if plan.bounds else None
    if bounds is not None:
        bounds_lib.exit_record_clear(bounds.exit_file)
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    env = {**os.environ, "PATH": SANDBOX_PATH}
    bwrap = subprocess.Popen(
        [*bwrap_args(plan, as_root=as_root, info_fd=info_w, block_fd=block_r), *command],
        env=env,
        pass_fds=(info_w, block_r),
        stdin=subprocess.DEVNULL,
        preexec_fn=_in_sandbox(bounds),  # noqa: PLW1509 (single-threaded until "go")
    )
    os.close(info_w)
    os.close(block_r)
    pasta = None
    child = None
    group = None
    disk = None
    stopping = {"signal": False}

    def stop(signum, frame) -> None:
        stopping["signal"] = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        deadline = time.monotonic() + SETUP_TIMEOUT
        child = _read_child_pid(info_r, deadline)
        if bounds is not None:
            group = _confine(plan, bounds, child)
        _wait_loopback(child, bwrap, deadline)
        pasta = subprocess.Popen(
            pasta_args(plan, child, as_root=as_root),
            stdin=subprocess.DEVNULL,
            preexec_fn=_pasta_preexec,  # noqa: PLW1509 (single-threaded supervisor)
        )
        gateway = _default_gateway(child, pasta, deadline)
        routes = subprocess.run(
            [*_nsenter(plan, child, as_root=as_root), plan.tools["ip"], "-batch", "-"],
            input=route_script(plan, gateway),
            text=True,
            capture_output=True,
            timeout=5,
        )
        if routes.returncode != 0:
            raise SandboxError(f"blocking the host's addresses failed: {routes.stderr.strip()}")
        os.write(block_w, b"go")  # the server starts now
        os.close(block_w)
        block_w = -1
        if bounds is not None and bounds.disk_bytes:
            disk = bounds_lib.DiskWatch(
                [plan.workspace, plan.home], bounds.disk_bytes, bounds.disk_check_seconds
            ).start()
        while bwrap.poll() is None:
            if stopping["signal"]:
                return _stop(bwrap, child)
            if group is not None and group.oom_kills():
                return _bound_stop(bwrap, child, bounds, "memory")
            if disk is not None and disk.over:
                return _bound_stop(bwrap, child, bounds, "disk")
            with contextlib.suppress(subprocess.TimeoutExpired):
                bwrap.wait(timeout=0.2)
        if group is not None and group.oom_kills():  # the kernel killed the whole group
            return _bound_stop(bwrap, child, bounds, "memory")
        if stopping["signal"]:  # bwrap had the same signal (one process group)
            return 143
        code = bwrap.returncode
        return code if code >= 0 else 128 - code  # as a shell reports a signal
    except (SandboxError, OSError, subprocess.SubprocessError, ValueError) as exc:
        print(f"doce sandbox: {exc}; the server was not started.", file=sys.stderr, flush=True)
        return 70
    finally:
        if disk is not None:
            disk.stop()
        if block_w >= 0:
            # bwrap lets the server start when the block pipe closes, also without "go":
            # the sandbox must be dead before it does.
            _kill_unstarted(bwrap, child)
            os.close(block_w)
        os.close(info_r)
        if bwrap.poll() is None:
            bwrap.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            bwrap.wait(timeout=5)
        if pasta is not None:
            pasta.kill()
            pasta.wait()
        if group is not None:
            with contextlib.suppress(OSError):
                group.remove()


def _in_sandbox(bounds):
    """What bwrap (and so everything in the sandbox) inherits: the rlimits, and an OOM
    score that makes the kernel's OOM killer take an agent before doce or its
    database."""

    def preexec() -> None:
        bounds_lib.oom_score_adj_self()
        if bounds is not None:
            bounds_lib.apply_rlimits(bounds)

    return preexec


def _pasta_preexec() -> None:
    _pdeathsig()
    bounds_lib.oom_score_adj_self()


def _confine(plan: Plan, bounds, child: int):
    """The server's cgroups, with the held child in them (it has started nothing yet).
    A bound this machine cannot enforce is fatal with DOCE_LIMITS=required; otherwise
    the server's log says so."""
    group = bounds_lib.ServerGroup(plan.name, bounds)
    try:
        group.create()
        if group.problems and bounds.required:
            raise SandboxError(
                "its bounds cannot be enforced here (DOCE_LIMITS=required): "
                + "; ".join(group.problems)
            )
        group.add(child)
    except BaseException:
        with contextlib.suppress(OSError):
            group.remove()
        raise
    for problem in group.problems:
        print(f"doce sandbox: not enforced here: {problem}", file=sys.stderr, flush=True)
    return group


def _bound_stop(bwrap: subprocess.Popen, child: int, bounds, bound: str) -> int:
    """A bound was reached: everything in the sandbox goes at once (no grace: the tree
    is past what it may use), and the log, the exit record and the exit code say why."""
    message = (bounds_lib.memory_message if bound == "memory" else bounds_lib.disk_message)(bounds)
    with contextlib.suppress(OSError):
        os.kill(child, signal.SIGKILL)  # the namespace's init: everything inside goes
    with contextlib.suppress(subprocess.TimeoutExpired):
        bwrap.wait(timeout=STOP_GRACE)
    bounds_lib.exit_record_write(bounds.exit_file, bound=bound, message=message)
    print(f"doce sandbox: the server was stopped: {message}.", file=sys.stderr, flush=True)
    return bounds_lib.EXIT_CODES[bound]


def _kill_unstarted(bwrap: subprocess.Popen, child: int | None) -> None:
    """SIGKILL to a sandbox still held before its server: the namespace's init (which
    takes everything inside with it) and bwrap, and wait until bwrap is gone."""
    if child is not None:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    bwrap.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        bwrap.wait(timeout=5)


def _stop(bwrap: subprocess.Popen, child: int) -> int:
    """SIGTERM to the sandbox's processes (its init ignores it), then SIGKILL."""
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{child}/task/{child}/children").read_text().split():
            with contextlib.suppress(OSError):
                os.kill(int(task), signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        bwrap.wait(timeout=STOP_GRACE)
    if bwrap.poll() is None:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)  # the namespace's init: everything inside goes
    return 143


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: sandbox.py PLAN.json -- COMMAND...", file=sys.stderr)
        return 64
    plan = Plan.from_json(Path(argv[1]).read_text())
    return run(plan, argv[3:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
