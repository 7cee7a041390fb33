"""The docker runtime against a real Docker daemon: the compose file doce renders, run
by ``docker compose``, holds the agent in.

One daemon and one image for the session (tests/integration/dockerd.py: a dockerd of
the tests' own, an image built from a locally made Debian base, no registry). Alice's
and Bob's servers run as the runtime starts them; their stub LLMs listen on the
daemon's bridge address and are named ``host.docker.internal`` in their endpoints, as
a user's model server on the Docker host would be. Bob's agent, through its own bash
tool, tries to read Alice's files and to connect to her server, doce's services and
the host's; the bounds are tried from inside his container with ``docker exec`` (the
container's user, capabilities and cgroup, as his agent's shell has them).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest
from django.conf import settings
from django.test import override_settings

from bench.stub_llm import StubLLM
from doce.opencode import ApiKeyCredential
from doce.opencode.runtimes import CustomProvider, RuntimeState, ServerSpec, docker
from doce.opencode.runtimes.config import HOME_FILE_FOLDERS
from doce.opencode.runtimes.docker import DockerComposeRuntime
from doce.opencode.runtimes.limits import MIB
from projects.models import Project
from projects.preview_server import PreviewApp
from tests.factories import UserFactory
from tests.integration import dockerd
from tests.integration.conftest import PROBE, probe_listing, wait_for
from tests.projects.test_preview_proxy import served

# One dockerd for the whole run (its bridge, data root and image cache): the tests using
# it are in this file, and `make test` keeps a file's tests on one worker (loadfile).
pytestmark = pytest.mark.integration

ALICE_KEY = "sk-alice-" + "a1" * 16
BOB_KEY = "sk-bob-" + "b2" * 16
MEMORY_MB = 768
PIDS = 128
CPUS = 1.0
DISK_MB = 256
BOUNDS = {
    "DOCE_SERVER_MEMORY_LIMIT_MB": str(MEMORY_MB),
    "DOCE_SERVER_PIDS_LIMIT": str(PIDS),
    "DOCE_SERVER_CPUS": str(CPUS),
    "DOCE_SERVER_DISK_LIMIT_MB": str(DISK_MB),
}


@pytest.fixture(scope="session")
def docker_daemon():
    """The daemon; afterwards the host's firewall and forwarding are as they were."""
    if os.geteuid() != 0 and not os.environ.get("CI"):
        pytest.skip("the tests' own Docker daemon needs root (CI runs these as root)")
    before = dockerd.firewall()
    with dockerd.running_daemon() as daemon:
        yield daemon
    after = dockerd.firewall()
    assert after == before, {key: (before[key], after[key]) for key in before}


@dataclass
class Server:
    runtime: DockerComposeRuntime
    spec: ServerSpec
    state: RuntimeState
    stub: StubLLM

    def client(self):
        return self.runtime.client(self.state, self.spec.password)

    @property
    def net_container(self) -> str:
        """The container holding the project's network namespace (and its routes)."""
        return f"{self.state.compose_project}_net"

    def inspect(self, container: str = "") -> dict:
        name = container or self.state.container_name
        return json.loads(_docker("inspect", name).stdout)[0]

    def address(self) -> tuple[str, str]:
        """The project's address and its network's gateway (the Docker host's address
        on the project's bridge)."""
        (network,) = self.inspect(self.net_container)["NetworkSettings"]["Networks"].values()
        return network["IPAddress"], network["Gateway"]


_daemon: dockerd.Daemon | None = None


def _docker(*args: str, timeout: float = 120, check: bool = True):
    assert _daemon is not None
    return _daemon.docker(*args, timeout=timeout, check=check)


@pytest.fixture(scope="module")
def docker_settings(docker_daemon):
    """doce pointed at the daemon: its CLI's environment, the image, the bounds."""
    global _daemon
    _daemon = docker_daemon
    with pytest.MonkeyPatch.context() as patch:
        for name, value in docker_daemon.env.items():
            patch.setenv(name, value)
        patch.delenv("DOCKER_CONTEXT", raising=False)
        with override_settings(
            DOCE_RUNTIME="docker",
            DOCE_OPENCODE_IMAGE=docker_daemon.image,
            DOCE_OPENCODE_IMAGE_BIN=dockerd.IMAGE_BIN,
            DOCE_OPENCODE_IMAGE_HOME=dockerd.IMAGE_HOME,
            DOCE_OPENCODE_IMAGE_USER=dockerd.IMAGE_USER,
            **BOUNDS,
        ):
            yield docker_daemon


def _start(name: str, data_dir: Path, stub: StubLLM, key: str) -> Server:
    """A server as the runtime starts one, healthy, with its user's key injected. Its
    user is staff: an endpoint on the Docker host is theirs to name."""
    endpoint = f"http://host.docker.internal:{stub.port}/v1"
    spec = ServerSpec(
        name=name,
        data_dir=data_dir,
        model=f"stub/{stub.model}",
        password=secrets.token_urlsafe(24),
        custom_providers=(CustomProvider("stub", "Stub", endpoint, [stub.model]),),
        trusted_endpoints=True,
    )
    runtime = DockerComposeRuntime()
    state = runtime.start(spec)
    server = Server(runtime, spec, state, stub)
    try:
        runtime.wait_healthy(state, spec.password)
        with server.client() as client:
            client.set_auth("stub", ApiKeyCredential(key))
    except BaseException:
        runtime.remove(state)
        raise
    return server


@pytest.fixture(scope="module")
def alice(docker_settings, tmp_path_factory):
    with StubLLM(host=dockerd.GATEWAY, reply="Alice's site is ready.") as stub:
        server = _start("alice", tmp_path_factory.mktemp("alice"), stub, ALICE_KEY)
        try:
            yield server
        finally:
            server.runtime.remove(server.state)


@pytest.fixture(scope="module")
def bob(docker_settings, tmp_path_factory):
    with StubLLM(host=dockerd.GATEWAY, reply="Done.", commands={"attack": "true"}) as stub:
        server = _start("bob", tmp_path_factory.mktemp("bob"), stub, BOB_KEY)
        try:
            yield server
        finally:
            server.runtime.remove(server.state)


def _prompt(server: Server, text: str) -> None:
    with server.client() as client:
        session = client.session_create(title="docker")["id"]
        client.prompt(session, text)


def _host_address() -> str:
    """This machine's own IPv4 address on a network (not loopback, not a bridge of ours)."""
    for name, addresses in psutil.net_if_addrs().items():
        for address in addresses:
            if (
                address.family == socket.AF_INET
                and not address.address.startswith("127.")
                and name != dockerd.BRIDGE
                and not name.startswith(("br-", "veth", "docker"))
            ):
                return address.address
    raise AssertionError("this machine has no network address besides loopback")


@pytest.fixture
def listening():
    """Listening sockets standing for host services: ``listening(host)`` -> port."""
    sockets = []

    def listen(host: str) -> int:
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen(8)
        sockets.append(sock)
        return sock.getsockname()[1]

    yield listen
    for sock in sockets:
        sock.close()


def _probe_from(server: Server, targets: dict[str, tuple[str, int]]) -> dict[str, str]:
    result = _docker(
        "exec", server.state.container_name, "python3", "-c", PROBE, probe_listing(targets)
    )
    return json.loads(result.stdout)


def _attack_script(alice: Server, targets: dict[str, tuple[str, int]]) -> str:
    """A bash command running a python3 script (as an injected agent would) that prints
    what it could read and which ports answered."""
    alice_files = [  # her files and doce's, by their host paths; the Docker socket
        str(alice.spec.layout.workspace / "opencode.json"),
        str(alice.spec.layout.data_dir / "compose.yaml"),
        str(Path(settings.DOCE_DATA_DIR) / "encryption_keys"),
        str(settings.BASE_DIR / "manage.py"),
        "/var/run/docker.sock",
        "/run/docker.sock",
    ]
    program = f"""
import glob, json, os, socket, subprocess
def read(path):
    try:
        with open(path, "rb") as f: return f.read(4000).decode("latin-1")
    except Exception as e: return "DENIED " + type(e).__name__
for path in {alice_files!r}:
    print("read", path, read(path))
print("env of every process:")
for path in glob.glob("/proc/[0-9]*/environ"):
    print(path, read(path).replace(chr(0), " "))
found = subprocess.run(["find", "/", "-xdev", "-name", "auth.json"],
                       capture_output=True, text=True).stdout.split()
print("auth files found:", found)
for path in found:
    print("auth file", path, read(path))
status = open("/proc/self/status").read()
print("identity", os.getuid(),
      [l for l in status.splitlines() if l.startswith(("CapEff", "NoNewPrivs"))])
for label, (host, port) in {targets!r}.items():
    s = socket.socket(); s.settimeout(2)
    try:
        s.connect((host, port)); print("CONNECT", label, host, port, "OPEN")
    except Exception as e:
        print("CONNECT", label, host, port, "CLOSED", type(e).__name__)
    finally:
        s.close()
with open("written-by-bob.txt", "w") as f: f.write("bob was here")
print("wrote in own workspace")
"""
    return "python3 - <<'PYEOF'\n" + program + "\nPYEOF"


def test_the_container_is_bounded_and_sealed(bob):
    """What the daemon was told, and what a process inside sees."""
    host_config = bob.inspect()["HostConfig"]
    assert host_config["Memory"] == MEMORY_MB * MIB
    assert host_config["MemorySwap"] == MEMORY_MB * MIB  # no swap on top
    assert host_config["PidsLimit"] == PIDS
    assert host_config["NanoCpus"] == int(CPUS * 1e9)
    assert host_config["OomScoreAdj"] > 0
    assert host_config["CapDrop"] == ["ALL"] and not host_config["CapAdd"]
    assert host_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert host_config["Privileged"] is False
    assert host_config["ReadonlyRootfs"] is True
    # The project's network namespace is net's (below), published on loopback only.
    net = bob.inspect(bob.net_container)
    assert host_config["NetworkMode"] == f"container:{net['Id']}"
    assert host_config["PortBindings"] in ({}, None)
    net_config = net["HostConfig"]
    assert net_config["PortBindings"] == {
        "4096/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(bob.state.port)}]
    }
    # net: NET_ADMIN for its routes and nothing else; no mount at all.
    assert net_config["CapDrop"] == ["ALL"] and net_config["CapAdd"] == ["NET_ADMIN"]
    assert net_config["SecurityOpt"] == ["no-new-privileges:true"]
    assert net_config["Privileged"] is False and net_config["ReadonlyRootfs"] is True
    assert net["Mounts"] == [] and net["State"]["Health"]["Status"] == "healthy"
    mounts = {mount["Destination"]: mount["Source"] for mount in bob.inspect()["Mounts"]}
    own = {"/workspace", dockerd.IMAGE_HOME}
    own |= {f"{dockerd.IMAGE_HOME}/{folder}" for folder in HOME_FILE_FOLDERS}
    assert set(mounts) <= own, mounts  # no Docker socket, nothing of doce's
    assert mounts["/workspace"] == str(bob.spec.layout.workspace.resolve())
    assert host_config["Tmpfs"] == {"/tmp": f"size={DISK_MB * MIB},mode=1777"}

    inside = _docker(
        "exec",
        bob.state.container_name,
        "sh",
        "-c",
        "id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /proc/self/oom_score_adj;"
        " touch /usr/x 2>&1; df -k /tmp | tail -1",
    ).stdout
    lines = inside.splitlines()
    assert lines[0] == "1000"
    assert "CapEff:\t0000000000000000" in lines
    assert "NoNewPrivs:\t1" in lines
    assert int(lines[3]) > 0, inside  # the OOM killer's first pick
    assert "Read-only file system" in inside
    assert int(lines[-1].split()[1]) * 1024 <= DISK_MB * MIB  # /tmp: bounded tmpfs


def test_bobs_agent_reaches_only_its_own_llm(alice, bob, listening):
    """Bob's agent's shell cannot read Alice's files or reach her server, doce's
    services or the host's loopback; a prompt reaches each user's own stub LLM with
    their own key."""
    _prompt(alice, "Build Alice's bakery site")
    assert alice.stub.authorizations()[-1] == f"Bearer {ALICE_KEY}"

    alice_ip, _ = alice.address()
    _, bob_gateway = bob.address()
    web = listening("127.0.0.1")  # doce's web port, say
    targets = {"bob-llm": (dockerd.GATEWAY, bob.stub.port)}
    for via, host in (("loopback", "127.0.0.1"), ("gateway", bob_gateway)):
        for what, port in (
            ("alice-opencode", alice.state.port),
            ("doce-web", web),
            ("postgresql", 5432),
            ("redis", 6379),
        ):
            targets[f"{what}-{via}"] = (host, port)
    for what, port in (
        ("alice-opencode", alice.state.port),
        ("doce-web", web),
        ("postgresql", 5432),
        ("redis", 6379),
    ):
        targets[f"{what}-host-gateway"] = (dockerd.GATEWAY, port)
    targets["alice-container"] = (alice_ip, 4096)
    bob.stub.commands["attack"] = _attack_script(alice, targets)

    _prompt(bob, "Please [[attack]]")
    outputs = wait_for(bob.stub.tool_outputs, timeout=120, what="Bob's tool call's output")
    output = "\n".join(outputs)
    assert "output truncated" not in output, output[:3000]
    assert "wrote in own workspace" in output, output[:3000]
    for line in output.splitlines():
        if line.startswith("read "):
            assert " DENIED " in line, line
    assert "identity 1000 ['CapEff:\\t0000000000000000', 'NoNewPrivs:\\t1']" in output
    leaked = [
        name
        for name, value in {
            "Alice's key": ALICE_KEY,
            "Alice's server password": alice.spec.password,
        }.items()
        if value in output
    ]
    assert leaked == [], f"{leaked} reached Bob's agent:\n{output[:3000]}"
    for label in targets:
        assert f"CONNECT {label} " in output, output[:3000]
    opened = [
        line.split()[1]
        for line in output.splitlines()
        if line.startswith("CONNECT") and line.endswith(" OPEN")
    ]
    assert opened == ["bob-llm"], output[:3000]
    # Only his own container's processes: init, his server, the tool's shell.
    environ_lines = [line for line in output.splitlines() if line.startswith("/proc/")]
    assert 0 < len(environ_lines) <= 8, environ_lines
    written = bob.spec.layout.workspace / "written-by-bob.txt"
    assert written.read_text() == "bob was here"
    assert bob.stub.authorizations()[-1] == f"Bearer {BOB_KEY}"


def test_services_on_the_hosts_own_addresses_are_unreachable(alice, bob, listening):
    """A service on all of the host's interfaces (a model server or a database bound to
    0.0.0.0) answers on every address of the host; Bob's container reaches none of
    them, nor link-local addresses (cloud metadata), because its net service's routes
    say so. Alice's bridge was made after Bob's routes: it is closed too. Only the
    address Bob's endpoint names (``host.docker.internal``) is let past, whole."""
    everywhere = listening("0.0.0.0")  # noqa: S104 (a host service, for the test)
    host = _host_address()
    _, bob_gateway = bob.address()
    _, alice_gateway = alice.address()
    targets = {
        "host-address": (host, everywhere),
        "host-address-own-listener": (host, listening(host)),
        "bob-gateway": (bob_gateway, everywhere),
        "alice-gateway": (alice_gateway, everywhere),  # a bridge younger than Bob's routes
        "cloud-metadata": ("169.254.169.254", 80),
        "bob-llm": (dockerd.GATEWAY, bob.stub.port),  # host.docker.internal: allowed
    }
    found = _probe_from(bob, targets)
    # Refused by the container's own routes at once (not a timeout, not the host).
    blocked = {"ENETUNREACH", "EHOSTUNREACH"}
    assert {label: found[label] in blocked for label in targets if label != "bob-llm"} == {
        label: True for label in targets if label != "bob-llm"
    }, found
    assert found["bob-llm"] == "OPEN", found
    # Without net's routes they answer: a plain container on Bob's network (as the
    # runtime ran them before) reaches the host's service through every one.
    control = ("host-address", "bob-gateway", "alice-gateway")
    listing = probe_listing({label: targets[label] for label in control})
    network = next(iter(bob.inspect(bob.net_container)["NetworkSettings"]["Networks"]))
    plain = _docker(
        "run",
        "--rm",
        f"--network={network}",
        f"--user={dockerd.IMAGE_USER}",
        "--entrypoint=python3",
        settings.DOCE_OPENCODE_IMAGE,
        "-c",
        PROBE,
        listing,
    )
    assert json.loads(plain.stdout) == dict.fromkeys(control, "OPEN")


def test_the_agent_cannot_change_its_routes_and_has_no_ipv6(bob):
    """The routes are net's: Bob's container shares its namespace without NET_ADMIN.
    IPv6 is off in the namespace (not even a link-local address to the host's)."""
    result = _docker(
        "exec",
        bob.state.container_name,
        "sh",
        "-c",
        "ip route del 169.254.0.0/16 metric 100 2>&1; ip route add 169.254.169.254/32"
        ' dev eth0 2>&1; python3 -c "import socket; s = socket.socket();'
        " s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1);"
        " s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1);"
        " s.bind(('', 4096))\" 2>&1 | tail -1;"  # the server's replies' port: taken
        " ip -4 route show; echo IPV6; cat /proc/net/if_inet6",
        check=False,
    )
    output = result.stdout
    assert output.count("Operation not permitted") == 2, output
    assert "Address already in use" in output, output
    routes, _, ipv6 = output.partition("IPV6")
    assert "unreachable 169.254.0.0/16" in routes, routes
    assert f"{dockerd.GATEWAY} via" in routes, routes  # host.docker.internal, past the blocks
    assert ipv6.strip() == "", ipv6


DEV_PAGE = "<h1>Bob's Vite site, from his dev server</h1>"


@pytest.mark.django_db(transaction=True)
def test_the_preview_reaches_the_dev_server_through_devport_only(bob, listening):
    """The agent's dev server listens on ``$PORT`` inside Bob's namespace; the preview
    reaches it through devport's Unix socket (socat in the same namespace), with no
    published port. A socket Bob's agent binds to that port gets no way out: its
    connections to the host are refused by the routes like any other."""
    everywhere = listening("0.0.0.0")  # noqa: S104 (a host service, for the test)
    _, gateway = bob.address()
    # The port is free (no dev server yet): the agent binds it and dials out from it.
    escape = (
        "import errno, os, socket, sys\n"
        "s = socket.socket(); s.settimeout(2)\n"
        "s.bind(('0.0.0.0', int(os.environ['PORT'])))\n"
        "try:\n"
        f"    s.connect(({gateway!r}, {everywhere})); print('OPEN')\n"
        "except OSError as e:\n"
        "    print(errno.errorcode.get(e.errno, e))\n"
    )
    result = _docker("exec", bob.state.container_name, "python3", "-c", escape)
    assert result.stdout.strip() in {"ENETUNREACH", "EHOSTUNREACH"}, result.stdout

    devport = bob.inspect(f"{bob.state.compose_project}_devport")
    assert (
        devport["HostConfig"]["NetworkMode"] == f"container:{bob.inspect(bob.net_container)['Id']}"
    )
    assert devport["HostConfig"]["CapDrop"] == ["ALL"] and not devport["HostConfig"]["CapAdd"]
    assert devport["Config"]["User"] == dockerd.IMAGE_USER  # doce (the tests) runs as root
    assert devport["HostConfig"]["PortBindings"] in (None, {})
    dev_socket = bob.spec.layout.dev_socket
    assert wait_for(dev_socket.is_socket, timeout=30, what="devport's socket")

    owner = UserFactory()
    project = Project.objects.create(
        owner=owner,
        name="Bob's site",
        prompt="Build it",
        server_password=bob.spec.password,
        data_dir=str(bob.spec.data_dir),
        status=Project.Status.RUNNING,
        runtime_state=bob.state.to_dict(),
    )
    (bob.spec.layout.workspace / "index.html").write_text("<h1>static</h1>")
    with served(PreviewApp()) as port:
        page = f"http://127.0.0.1:{port}/{project.preview_token}/"
        # socat answers, finds nothing on PORT and closes: the static files are served.
        assert httpx.get(page, timeout=10).text == "<h1>static</h1>"

        # In the background, detached from the tool call's shell, as `npm run dev &`.
        bob.stub.commands["devserver"] = (
            f"mkdir -p dev && printf '%s' \"{DEV_PAGE}\" > dev/index.html && "
            '(setsid python3 -m http.server "$PORT" --directory dev >/dev/null 2>&1 &) && '
            'echo "dev on $PORT"'
        )
        _prompt(bob, "Start the [[devserver]]")
        outputs = wait_for(
            lambda: [o for o in bob.stub.tool_outputs() if "dev on" in o],
            timeout=120,
            what="the agent's dev server start",
        )
        assert f"dev on {docker.DEV_PORT}" in outputs[-1]

        def dev_answer() -> str:
            return httpx.get(page, timeout=10).text

        assert wait_for(lambda: dev_answer() == DEV_PAGE, timeout=30, what="the dev server")


def test_forking_beyond_the_pids_bound_fails(bob):
    """Forks stop at the bound (threads count too); the server stays up."""
    fork = f"""
import os
r, w = os.pipe()
children = 0
try:
    for _ in range({2 * PIDS}):
        if os.fork() == 0:
            os.close(w); os.read(r, 1); os._exit(0)
        children += 1
    print("FORKED ALL", children)
except OSError as e:
    print("FORK FAILED", children, e.errno)
os.close(w)
for _ in range(children):
    os.wait()
"""
    result = _docker("exec", bob.state.container_name, "python3", "-c", fork)
    words = result.stdout.split()
    assert words[:2] == ["FORK", "FAILED"], result.stdout
    assert 0 < int(words[2]) < PIDS
    with bob.client() as client:
        assert client.health()["healthy"] is True


def test_allocating_beyond_the_memory_bound_is_killed(bob):
    """The kernel's OOM killer stops the allocation at the bound, inside the container's
    cgroup. It takes the largest process there: the allocator, or the server itself when
    that is larger (the server then has crashed, and doce restarts it). Runs last."""
    allocate = (
        "chunks = []\n"
        f"for step in range({2 * MEMORY_MB // 64}):\n"
        "    chunks.append(b'x' * (64 << 20)); print(step, flush=True)\n"
        "print('ALLOCATED ALL')\n"
    )
    since = int(time.time()) - 1
    result = _docker("exec", bob.state.container_name, "python3", "-c", allocate, check=False)
    assert result.returncode == 137, (result.returncode, result.stdout[-500:], result.stderr)
    assert "ALLOCATED ALL" not in result.stdout
    reached = (int(result.stdout.split()[-1]) + 1) * 64 if result.stdout.split() else 0
    assert reached < MEMORY_MB, reached

    # Docker saw the container's cgroup run out of memory (the kernel's OOM event). Its
    # event, not State.OOMKilled: that flag is cleared when the container restarts, which
    # it does when the kernel took the server rather than the allocator.
    def oom_event() -> bool:
        events = _docker(
            "events",
            *("--since", str(since), "--until", str(int(time.time()) + 1)),
            *("--filter", f"container={bob.state.container_name}", "--filter", "event=oom"),
            *("--format", "{{.Action}}"),
        )
        return "oom" in events.stdout.split()

    assert wait_for(oom_event, timeout=30, what="Docker's oom event for the container")
