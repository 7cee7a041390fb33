"""The Docker Compose runtime: each project's OpenCode server is a compose project.

``docker compose -p doce_<id> -f <data>/compose.yaml up -d / stop / down -v``. The
container runs the same ``opencode serve`` with the same environment as the local
runtime, listens on 0.0.0.0 inside the container (a port mapping cannot reach a
loopback-only server) and is published on 127.0.0.1 only. The workspace is a bind mount
(doce reads the site's files); the OpenCode home, with auth.json, is a named volume that
``down -v`` deletes, and that ``docker cp`` reads back (refreshed OAuth tokens). The
server password is passed to ``docker compose`` in its
environment and referenced by name in the file, so it is never written to disk.

The image defaults to doce's own (it carries the pinned binary). The workspace folder
must be writable by the image's user (uid 1000 in doce's image): doce running as root
hands it over. A custom provider whose base URL is on the host must use
``host.docker.internal`` (mapped to the host).

The host's own services: Docker lets a container reach whatever listens on the host's
non-loopback addresses (its bridges' gateways, its LAN address), and link-local ones
(cloud metadata); the host's firewall never sees that traffic as forwarded. So each
project is two services, as a Kubernetes pod: ``net`` owns the network namespace (the
project's network, the published port, ``host.docker.internal``) and, with
``NET_ADMIN`` and nothing else, puts in the same ``unreachable`` routes as the local
sandbox (``sandbox.blocked_networks``: the host's addresses and other networks,
link-local addresses), plus the private ranges where Docker and LANs put networks, and
the gateway as a destination; the hosts an allowed endpoint names (and the host's DNS
servers) are routed past them. Then it sleeps. ``opencode`` joins that namespace
(``network_mode: service:net``) only once the routes are in (``service_healthy``),
without any capability to change them.

The site's dev server (``npm run dev`` on ``PORT``, docs/preview.md) is not published:
publishing a port the agent can bind would need its replies routed past the blocks,
and a socket the agent bound to that port could then reach the host. A third service,
``devport``, joins the namespace with no capability and forwards a Unix socket in doce's
data folder (``Layout.dev_socket``, mounted there only) to ``127.0.0.1:PORT`` with
``socat``: loopback inside the namespace, no route involved. The preview server
connects to that socket.

Bounds (``limits.server_limits()``): memory with no swap on top, processes (threads
count), CPUs, and an OOM score that makes the kernel pick the agent first. Docker cannot
bound a bind-mounted workspace or a named volume on the usual filesystems (its
``storage_opt: size`` covers only the container's own layer, and only on overlay2 over
xfs with ``pquota``): the root filesystem is read-only and ``/tmp`` a tmpfs within the
memory bound, so nothing but the workspace and the home grows on the daemon's disk.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import ipaddress
import logging
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings

from doce import endpoints
from doce.opencode.runtimes import sandbox, sandbox_plan
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
from doce.opencode.runtimes.config import (
    HOME_FILE_FOLDERS,
    write_opencode_config,
    write_private,
)
from doce.opencode.runtimes.limits import server_limits
from doce.redaction import redact

logger = logging.getLogger(__name__)

CONTAINER_PORT = 4096
DEV_PORT = 4097  # the site's dev server, inside the namespace (PORT)
DEV_SERVICE = "devport"  # forwards doce's Unix socket to DEV_PORT
DEV_SOCKET_DIR = "/run/doce-devport"  # Layout.dev_socket's folder, inside devport
DEV_MEMORY_BYTES = 64 * 1024 * 1024
DEV_CONNECTIONS = 64  # socat's children: one per connection the preview has open
UNIX_PATH_MAX = 108  # sun_path's size on Linux, with its final NUL
CONTAINER_WORKSPACE = "/workspace"
SERVICE = "opencode"
NET_SERVICE = "net"  # holds the project's network namespace and its routes
COMPOSE_FILE = "compose.yaml"
NETWORK = "sandbox"
DOCKER_HOST_NAME = "host.docker.internal"
# Where Docker's address pools (172.17-31/16, 192.168/16 by default) and LANs put
# networks: blocked whole, so a bridge made after a project started (another project's,
# whose gateway is the host) is closed too. With the shared ones and benchmarking.
PRIVATE_NETWORKS = (
    "10.0.0.0/8",
    "100.64.0.0/10",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "198.18.0.0/15",
)
# The blocks' metric: above the kernel's own routes (the container's own network stays
# connected) and the routes past them (an allowed host inside a blocked range).
BLOCK_METRIC = 100
REPLY_TABLE = 100  # the server's replies' routing table (and its rule's preference)
NET_MEMORY_BYTES = 32 * 1024 * 1024  # sh, ip and sleep
NET_PIDS = 16
ROUTES_READY = "/run/doce/routes-in"  # net's tmpfs: written once every route is in
RESOLV_CONF_FILES = ("/etc/resolv.conf", "/run/systemd/resolve/resolv.conf")
# Above 0 (doce, its database, dockerd): the kernel's OOM killer takes an agent first.
OOM_SCORE_ADJ = 500
AUTH_FILE = ".local/share/opencode/auth.json"  # under the image's home
# What the docker CLI needs from doce's environment to find its daemon; nothing else.
_CLI_ENV = (
    "PATH",
    "HOME",
    "XDG_RUNTIME_DIR",
    "DOCKER_HOST",
    "DOCKER_CONTEXT",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
)
_UP_TIMEOUT = 600  # may pull the image
_COMMAND_TIMEOUT = 120


def compose_project_name(name: str) -> str:
    """``doce_<id>``; compose project names are lower case letters, digits, ``_-``."""
    return "doce_" + re.sub(r"[^a-z0-9_-]", "-", name.lower())


def _folder_project_name(spec: ServerSpec) -> str:
    """A folder keeps its compose project (and so its home volume) once started: a
    server taken over from the warm pool, started under the pool's name, restarts for
    its project with the same home."""
    try:
        existing = yaml.safe_load((spec.layout.data_dir / COMPOSE_FILE).read_text())
    except (OSError, yaml.YAMLError):
        existing = None
    name = existing.get("name") if isinstance(existing, dict) else None
    if isinstance(name, str) and re.fullmatch(r"doce_[a-z0-9_-]+", name):
        return name
    return compose_project_name(spec.name)


def render_compose(spec: ServerSpec, *, port: int) -> dict[str, Any]:
    name = _folder_project_name(spec)
    home = settings.DOCE_OPENCODE_IMAGE_HOME
    env = server_env(home=home, password=None)
    env.pop("TMPDIR")  # the volume starts empty: let the image's /tmp serve
    env[PREVIEW_PORT_ENV] = str(DEV_PORT)  # the site's dev server listens there
    environment = [f"{key}={value}" for key, value in sorted(env.items())]
    # Bare name: compose takes the value from its own environment (see _run).
    environment.append("OPENCODE_SERVER_PASSWORD")
    stop_grace = max(1, int(settings.DOCE_OPENCODE_STOP_GRACE * 2))
    limits = server_limits()
    tmp_bytes = min(limits.memory_bytes, limits.disk_bytes)
    reaches_the_host = _reaches_the_host(spec)
    net: dict[str, Any] = {
        "image": settings.DOCE_OPENCODE_IMAGE,
        "container_name": f"{name}_{NET_SERVICE}",
        # Compose reads "$" as its own variables: "$$" reaches the shell as "$".
        "entrypoint": ["/bin/sh", "-c", route_command(spec, reaches_the_host).replace("$", "$$")],
        # The server's port, on the host's loopback only (the server shares this
        # namespace).
        "ports": [
            {
                "target": CONTAINER_PORT,
                "published": str(port),
                "host_ip": "127.0.0.1",
                "protocol": "tcp",
            }
        ],
        # Its own network: the internet, not doce's database, broker or web (they live
        # on the deployment's internal network), nor other projects.
        "networks": [NETWORK],
        # No IPv6 at all: not even a link-local address to reach the host's with.
        "sysctls": {
            "net.ipv6.conf.all.disable_ipv6": 1,
            "net.ipv6.conf.default.disable_ipv6": 1,
        },
        # Root for `ip route`, with NET_ADMIN and no other capability; it runs the
        # route script and then only sleeps.
        "user": "0:0",
        "cap_drop": ["ALL"],
        "cap_add": ["NET_ADMIN"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "tmpfs": [f"{ROUTES_READY.rpartition('/')[0]}:size=64k,mode=0700"],
        "init": True,  # passes SIGTERM to the sleep
        "restart": "no",
        "mem_limit": NET_MEMORY_BYTES,
        "memswap_limit": NET_MEMORY_BYTES,
        "pids_limit": NET_PIDS,
        "healthcheck": {
            "test": ["CMD", "test", "-e", ROUTES_READY],
            "interval": "1s",
            "timeout": "5s",
            "retries": 30,
        },
        "labels": {"org.doce.server": spec.name},
    }
    if reaches_the_host:
        # Only when an allowed endpoint names the Docker host (Ollama on the host, say).
        net["extra_hosts"] = [f"{DOCKER_HOST_NAME}:host-gateway"]
    compose: dict[str, Any] = {
        "name": name,
        "services": {
            NET_SERVICE: net,
            DEV_SERVICE: _devport_service(spec, name),
            SERVICE: {
                "image": settings.DOCE_OPENCODE_IMAGE,
                "container_name": f"{name}_{SERVICE}",
                "entrypoint": [settings.DOCE_OPENCODE_IMAGE_BIN],
                # All interfaces of the container only; published on the host's loopback.
                "command": ["serve", "--hostname", "0.0.0.0", "--port", str(CONTAINER_PORT)],  # noqa: S104
                "working_dir": CONTAINER_WORKSPACE,
                "environment": environment,
                "volumes": [
                    {
                        "type": "bind",
                        "source": str(spec.layout.workspace.resolve()),
                        "target": CONTAINER_WORKSPACE,
                    },
                    {"type": "volume", "source": "opencode_home", "target": home},
                    # The provider files config.py writes (credential files, header
                    # values): on the host, read-only inside.
                    *(
                        {
                            "type": "bind",
                            "source": str((spec.layout.home / folder).resolve()),
                            "target": f"{home}/{folder}",
                            "read_only": True,
                        }
                        for folder in HOME_FILE_FOLDERS
                    ),
                ],
                # net's namespace, once its routes are in; no capability to change them.
                "network_mode": f"service:{NET_SERVICE}",
                "depends_on": {NET_SERVICE: {"condition": "service_healthy"}},
                # Reaps the helpers OpenCode starts (its npm install).
                "init": True,
                # OpenCode ignores SIGTERM during its npm install: docker kills after this.
                "stop_grace_period": f"{stop_grace}s",
                # doce's reconciler restarts projects; docker must not do it behind its back.
                "restart": "no",
                # Not root, no capability, no new privileges, no Docker socket.
                "user": settings.DOCE_OPENCODE_IMAGE_USER,
                "cap_drop": ["ALL"],
                "security_opt": ["no-new-privileges:true"],
                # Bounded: memory (no swap on top), processes, CPUs; the OOM killer's
                # first pick. Only the workspace and the home are writable on disk.
                "mem_limit": limits.memory_bytes,
                "memswap_limit": limits.memory_bytes,
                "pids_limit": limits.pids,
                "cpus": limits.cpus,
                "oom_score_adj": OOM_SCORE_ADJ,
                "read_only": True,
                "tmpfs": [f"/tmp:size={tmp_bytes},mode=1777"],  # noqa: S108
                "labels": {
                    "org.doce.server": spec.name,
                },
            },
        },
        "volumes": {"opencode_home": {}},
        "networks": {NETWORK: {"driver": "bridge", "enable_ipv6": False}},
    }
    return compose


def _devport_service(spec: ServerSpec, name: str) -> dict[str, Any]:
    """``socat`` from ``Layout.dev_socket`` to the dev server's port, in net's namespace:
    no capability, read-only, only the socket's folder mounted. When nothing listens on
    the port it closes the connection at once (the preview serves the files then)."""
    socket_path = f"{DEV_SOCKET_DIR}/{spec.layout.dev_socket.name}"
    return {
        "image": settings.DOCE_OPENCODE_IMAGE,
        "container_name": f"{name}_{DEV_SERVICE}",
        "entrypoint": [
            "socat",
            f"UNIX-LISTEN:{socket_path},fork,unlink-early,mode=600,max-children={DEV_CONNECTIONS}",
            f"TCP4:127.0.0.1:{DEV_PORT},connect-timeout=2",
        ],
        "volumes": [
            {
                "type": "bind",
                "source": str(spec.layout.dev_socket.parent.resolve()),
                "target": DEV_SOCKET_DIR,
            }
        ],
        "network_mode": f"service:{NET_SERVICE}",
        "depends_on": {NET_SERVICE: {"condition": "service_started"}},
        "user": _devport_user(),
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "read_only": True,
        "init": True,  # reaps socat's children, passes SIGTERM
        "restart": "no",
        "mem_limit": DEV_MEMORY_BYTES,
        "memswap_limit": DEV_MEMORY_BYTES,
        "pids_limit": DEV_CONNECTIONS + 8,
        "labels": {"org.doce.server": spec.name},
    }


def _devport_user() -> str:
    """Who makes the socket: doce's own user, so doce may connect to it; doce running as
    root: the image's user (``_hand_over`` gives it the folder), never root."""
    if os.geteuid() == 0:
        return settings.DOCE_OPENCODE_IMAGE_USER
    return f"{os.geteuid()}:{os.getegid()}"


def route_command(spec: ServerSpec, reaches_the_host: bool) -> str:
    """The shell script ``net`` runs: the routes (``ip -batch``), then the ready file,
    then sleep. The gateway (the Docker host, as its bridge's address) and
    ``host.docker.internal`` are read inside; a step that fails stops the script, so
    the file never appears and ``opencode`` never starts (fail closed)."""
    blocked = [
        network
        for network in _blocked_networks()
        if ":" not in network  # IPv6 is off in the namespace
    ]
    _, hosts = sandbox_plan.reach(spec)
    passed = sorted({*hosts, *_nameservers()}, key=ipaddress.ip_address)
    lines = [f"route replace {host}/32 via $gw" for host in passed]
    if reaches_the_host:
        lines.insert(0, "route replace $host_gateway/32 via $gw")
    lines += [f"route replace unreachable {network} metric {BLOCK_METRIC}" for network in blocked]
    # The gateway carries the traffic but is no destination: it is the Docker host.
    # (An allowed host that is the gateway keeps its route: that one's metric is lower.)
    lines.append(f"route replace unreachable $gw/32 metric {BLOCK_METRIC}")
    # Except for the server's replies: the published port reaches it from the host's
    # address on the project's bridge (docker-proxy, or Docker's NAT), i.e. the gateway.
    # Only the listening socket has that source port (the agent cannot bind it while
    # the server listens), and only over TCP (6: the image may have no /etc/protocols).
    lines += [
        f"route replace default via $gw table {REPLY_TABLE}",
        f"rule add ipproto 6 sport {CONTAINER_PORT} lookup {REPLY_TABLE} pref {REPLY_TABLE}",
    ]
    script = [
        "set -eu",
        "set -- $(ip -4 route show default)",  # default via GATEWAY dev eth0
        'gw="$3"',
    ]
    if reaches_the_host:
        script += [
            f"set -- $(getent ahostsv4 {DOCKER_HOST_NAME})",
            'host_gateway="$1"',
        ]
    script += [
        "ip -batch - <<ROUTES",
        *lines,
        "ROUTES",
        f"touch {ROUTES_READY}",
        "exec sleep infinity",
    ]
    return "\n".join(script) + "\n"


def _blocked_networks() -> list[str]:
    try:
        return sandbox.blocked_networks(extra=PRIVATE_NETWORKS)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise RuntimeFailure(
            f"the host's addresses could not be listed (`ip -j address`: {exc}); install "
            "iproute2: a project's container is kept away from them",
            retryable=False,
        ) from None


def _nameservers() -> set[str]:
    """The IPv4 DNS servers Docker's embedded resolver forwards to from the project's
    namespace (the host's, when not on loopback): past the blocks, or no name resolves."""
    found: set[str] = set()
    for path in RESOLV_CONF_FILES:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            for line in Path(path).read_text().splitlines():
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    with contextlib.suppress(ValueError):
                        address = ipaddress.ip_address(fields[1])
                        if address.version == 4 and not address.is_loopback:
                            found.add(str(address))
    return found


def _reaches_the_host(spec: ServerSpec) -> bool:
    """Whether an endpoint the spec may use names the Docker host. ``doce.endpoints``
    decides again, as the local sandbox's plan does: a refused one maps nothing."""
    trusted = spec.trusted_endpoints
    named = [(provider.base_url, trusted) for provider in spec.custom_providers]
    named += [(url, True) for url in spec.trusted_urls]
    named += [(f"//{entry}", True) for entry in settings.DOCE_SANDBOX_ALLOW]
    for url, may_open in named:
        target = endpoints.split(url)
        if target is None or target[0].lower() != DOCKER_HOST_NAME:
            continue
        problem = endpoints.endpoint_problem(url, trusted=may_open)
        if not problem:
            return True
        logger.warning("docker runtime: %s is not mapped: %s", DOCKER_HOST_NAME, problem)
    return False


class DockerComposeRuntime(Runtime):
    name = "docker"
    alive_check_interval = 2.0  # each check runs `docker inspect`

    def start(self, spec: ServerSpec) -> RuntimeState:
        layout = spec.layout
        layout.prepare()
        layout.dev_socket.parent.mkdir(mode=0o700, exist_ok=True)
        if not _socket_path_fits(layout.dev_socket):
            logger.warning(
                "%s: the dev server's socket path is over %s bytes: set a shorter "
                "DOCE_DATA_DIR for the preview to reach dev servers",
                layout.dev_socket,
                UNIX_PATH_MAX - 1,
            )
        write_opencode_config(spec)
        _hand_over(layout)
        port = free_port(avoid=spec.reserved_ports)
        compose = render_compose(spec, port=port)
        compose_file = layout.data_dir / COMPOSE_FILE
        write_private(compose_file, yaml.safe_dump(compose, sort_keys=False))
        project = compose["name"]
        state = RuntimeState(
            runtime=self.name,
            data_dir=str(layout.data_dir),
            port=port,
            directory=CONTAINER_WORKSPACE,
            container_name=compose["services"][SERVICE]["container_name"],
            compose_project=project,
        )
        # `up` recreates the container when the file changed (a new port, model...).
        try:
            self._compose(
                state, ["up", "-d", "--remove-orphans"], password=spec.password, timeout=_UP_TIMEOUT
            )
        except RuntimeFailure as exc:
            # The routes not in (net exited or unhealthy): the server was never started;
            # net's output says why.
            net = dataclasses.replace(state, container_name=f"{project}_{NET_SERVICE}")
            exc.log_tail = exc.log_tail or self.log_tail(net)
            raise
        logger.info(
            "started OpenCode for project %s: compose project %s, port %s", spec.name, project, port
        )
        return state

    def stop(self, state: RuntimeState) -> RuntimeState:
        if state.compose_project:
            self._compose(state, ["stop"])
        return RuntimeState(
            runtime=state.runtime,
            data_dir=state.data_dir,
            port=state.port,
            directory=state.directory,
            active=False,
            container_name=state.container_name,
            compose_project=state.compose_project,
        )

    def remove(self, state: RuntimeState) -> None:
        if state.compose_project:
            self._compose(state, ["down", "-v", "--remove-orphans"])
        data_dir = state.layout.data_dir
        if (data_dir / MARKER).is_file():
            shutil.rmtree(data_dir, ignore_errors=True)

    def is_alive(self, state: RuntimeState) -> bool:
        if not state.container_name:
            return False
        result = _run(
            [_docker(), "inspect", "--format", "{{.State.Running}}", state.container_name],
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
        return result.returncode == 0 and result.stdout.strip() == "true"

    def log_tail(self, state: RuntimeState, lines: int = 40) -> str:
        """The container's output (``docker logs``): the server logs there, not to a file."""
        if not state.container_name:
            return ""
        result = _run(
            [_docker(), "logs", "--tail", str(lines), state.container_name],
            timeout=_COMMAND_TIMEOUT,
            check=False,
        )
        return redact((result.stdout + result.stderr).strip())

    def auth_file_read(self, state: RuntimeState) -> bytes | None:
        """``docker cp`` (the daemon reads the container's files: nothing runs inside it,
        and a link resolves within the container), as a tar on stdout."""
        if not state.container_name:
            return None
        source = f"{state.container_name}:{settings.DOCE_OPENCODE_IMAGE_HOME}/{AUTH_FILE}"
        result = _run(
            [_docker(), "cp", source, "-"], timeout=_COMMAND_TIMEOUT, check=False, binary=True
        )
        if result.returncode != 0:
            return None  # no such file yet, or no container
        try:
            with tarfile.open(fileobj=io.BytesIO(result.stdout), mode="r:") as archive:
                member = archive.next()
                if member is None or not member.isfile() or member.size > MAX_AUTH_FILE_BYTES:
                    raise tarfile.TarError("not a plain file of a few credentials")
                handle = archive.extractfile(member)
                return handle.read() if handle is not None else None
        except tarfile.TarError as exc:
            logger.warning("%s: its auth.json is not read: %s", state.container_name, exc)
            return None

    def dev_server(self, state: RuntimeState) -> tuple[int, Path | None] | None:
        """The socket ``devport`` forwards to the dev server's port; None when its path
        is too long for a Unix socket (the preview serves the static files then; the
        start said so)."""
        socket_path = state.layout.dev_socket
        return (DEV_PORT, socket_path) if _socket_path_fits(socket_path) else None

    def can_serve(self, started: ServerSpec, wanted: ServerSpec) -> bool:
        """``host.docker.internal`` is mapped, and hosts routed past the blocks, only for
        a spec that names them: ``wanted`` may need no other."""
        if _reaches_the_host(wanted) and not _reaches_the_host(started):
            return False
        return sandbox_plan.reach(wanted)[1] <= sandbox_plan.reach(started)[1]

    def _compose(
        self,
        state: RuntimeState,
        args: list[str],
        *,
        password: str | None = None,
        timeout: float = _COMMAND_TIMEOUT,
    ) -> None:
        compose_file = str(state.layout.data_dir / COMPOSE_FILE)
        command = [_docker(), "compose", "-p", state.compose_project, "-f", compose_file, *args]
        _run(command, timeout=timeout, password=password)


def _socket_path_fits(path: Path) -> bool:
    return len(os.fsencode(path)) < UNIX_PATH_MAX


def _hand_over(layout: Layout) -> None:
    """doce running as root: the workspace and the home files doce wrote go to the
    image's user, who could not enter them otherwise (mode 0700). doce running as that
    user (its own image) owns them already."""
    uid, _, gid = settings.DOCE_OPENCODE_IMAGE_USER.partition(":")
    if os.geteuid() != 0 or not uid.isdigit():
        return
    owner = (int(uid), int(gid) if gid.isdigit() else int(uid))
    os.lchown(layout.workspace, *owner)
    os.lchown(layout.dev_socket.parent, *owner)  # devport runs as the image's user too
    os.lchown(layout.workspace / "opencode.json", *owner)
    for folder in HOME_FILE_FOLDERS:
        top = layout.home / folder
        if not top.is_dir() or top.is_symlink():
            continue
        for root, dirs, files in os.walk(top):  # doce's own few files; links not followed
            for name in (root, *(os.path.join(root, entry) for entry in dirs + files)):
                os.lchown(name, *owner)


def _docker() -> str:
    found = shutil.which(settings.DOCE_DOCKER_BIN)
    if found is None:
        raise RuntimeFailure(
            f"{settings.DOCE_DOCKER_BIN!r} was not found: install Docker or use DOCE_RUNTIME=local",
            retryable=False,
        )
    return found


def _run(
    command: list[str],
    *,
    timeout: float,
    password: str | None = None,
    check: bool = True,
    binary: bool = False,
) -> subprocess.CompletedProcess:
    env = {name: os.environ[name] for name in _CLI_ENV if name in os.environ}
    if password is not None:
        env["OPENCODE_SERVER_PASSWORD"] = password
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=not binary, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(
            f"`{' '.join(command[1:4])}` timed out after {timeout:.0f} s"
        ) from None
    if check and result.returncode != 0:
        stderr = result.stderr.decode(errors="replace") if binary else result.stderr
        raise RuntimeFailure(
            f"`docker {' '.join(command[1:])}` failed ({result.returncode}): "
            f"{stderr.strip()[-500:]}"
        )
    return result
