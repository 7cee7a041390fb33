"""One user's agent can never reach another user's secrets, nor doce's.

Everything real: a Celery worker, the pinned OpenCode binary in its sandbox, and stub
LLMs that answer a marked message with a ``bash`` tool call, the way a prompt-injected
agent would run a script. Alice's project runs with her key; Bob's agent then tries, from
inside his project, to read her auth.json and every auth.json it can find, doce's key
files and database, every process's environment, and to connect to Alice's OpenCode
port, doce's web server, PostgreSQL and Redis (on loopback, the gateway and the host's
own address). Every attempt fails and none of the secrets shows up in what his tool
calls return; his agent can still write in its own project and talk to its own LLM.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from bench.stub_llm import StubLLM
from doce.opencode.runtimes import CustomProvider, LocalRuntime, RuntimeFailure, ServerSpec
from projects.models import Project
from tests.integration.conftest import (
    PROBE,
    assert_sealed,
    pipeline_report,
    probe_listing,
    project_running,
    server_pid,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ALICE_KEY = "sk-alice-" + "a1" * 16
BOB_KEY = "sk-bob-" + "b2" * 16
WEB_PORT_FILE = "web-port"


def _host_address() -> str:
    """This machine's own IPv4 address on a network (not loopback)."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return address.address
    return "127.0.0.1"


def _attack_script(*, alice: Project, targets: dict[str, tuple[str, int]]) -> str:
    """A bash command running a python3 script (as an injected agent would) that prints
    what it could read and which ports answered."""
    alice_home = Path(alice.data_dir) / "home"
    data_dir = Path(settings.DOCE_DATA_DIR)
    program = f"""
import glob, os, socket, subprocess
def read(path):
    try:
        with open(path, "rb") as f: return f.read(4000).decode("latin-1")
    except Exception as e: return "DENIED " + type(e).__name__
print("alice auth:", read({str(alice_home / ".local/share/opencode/auth.json")!r}))
for name in ("encryption_keys", "secret_key", "doce.sqlite3", "test.sqlite3"):
    print("data", name, read({str(data_dir)!r} + "/" + name))
print("env of every process:")
for path in glob.glob("/proc/[0-9]*/environ"):
    print(path, read(path).replace(chr(0), " "))
found = subprocess.run(["find", "/", "-name", "auth.json", "-not", "-path", "/proc/*"],
                       capture_output=True, text=True).stdout.split()
print("auth files found:", found)
for path in found:
    print("auth file", path, read(path))
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


@pytest.fixture
def key_files():
    """Key files as a first run (`make run`) leaves them in the data folder."""
    data_dir = Path(settings.DOCE_DATA_DIR)
    written = []
    for name, value in (
        ("encryption_keys", ",".join(settings.DOCE_ENCRYPTION_KEYS)),
        ("secret_key", settings.SECRET_KEY),
    ):
        path = data_dir / name
        if not path.exists():
            path.write_text(value + "\n")
            written.append(path)
    yield
    for path in written:
        path.unlink(missing_ok=True)


def test_bobs_agent_cannot_reach_alices_secrets_or_doces(
    alice, bob, celery_worker_process, live_server, key_files, cleanup_projects
):
    with (
        StubLLM(reply="Alice's site is ready.") as alice_stub,
        StubLLM(reply="Done probing.", commands={"attack": "true"}) as bob_stub,
    ):
        stub_connection(alice, alice_stub, api_key=ALICE_KEY)
        stub_connection(bob, bob_stub, api_key=BOB_KEY)
        alice_project = project_running(alice, "Build Alice's bakery site", celery_worker_process)
        wait_for(lambda: alice_stub.completions(), what="Alice's first request at her LLM")
        alice_password = str(alice_project.server_password)
        host = _host_address()
        web_port = int(live_server.url.rsplit(":", 1)[1])
        targets = {
            "alice-opencode": ("127.0.0.1", alice_project.runtime_state["port"]),
            "alice-opencode-via-host": (host, alice_project.runtime_state["port"]),
            "doce-web": ("127.0.0.1", web_port),
            "doce-web-via-host": (host, web_port),
            "postgresql": ("127.0.0.1", 5432),
            "postgresql-via-host": (host, 5432),
            "redis": ("127.0.0.1", 6379),
            "redis-via-host": (host, 6379),
            "gateway-postgresql": ("192.0.2.1", 5432),
            "metadata": ("169.254.169.254", 80),
            # A custom endpoint on the host opens for its own user only, and only its
            # own host:port: Alice's LLM is another port on 127.0.0.1.
            "alice-llm": ("127.0.0.1", alice_stub.port),
            "bob-llm": ("127.0.0.1", bob_stub.port),
        }
        bob_stub.commands["attack"] = _attack_script(alice=alice_project, targets=targets)

        bob_project = project_running(bob, "Please [[attack]]", celery_worker_process)
        outputs = wait_for(
            lambda: bob_stub.tool_outputs(),
            timeout=120,
            what="the output of Bob's tool call",
            explain=lambda: pipeline_report(bob_project, celery_worker_process),
        )

    output = "\n".join(outputs)
    # Whole: a leak must not hide in a part OpenCode cut off.
    assert "output truncated" not in output, output[:3000]
    assert "alice auth: DENIED" in output, output[:3000]
    assert "wrote in own workspace" in output, output[:3000]
    secrets = {
        "Alice's key": ALICE_KEY,
        "Alice's server password": alice_password,
        "the encryption key": settings.DOCE_ENCRYPTION_KEYS[0],
        "SECRET_KEY": settings.SECRET_KEY,
    }
    leaked = [name for name, value in secrets.items() if value in output]
    assert leaked == [], f"{leaked} reached Bob's agent:\n{output[:3000]}"
    for label in targets:
        assert f"CONNECT {label} " in output, output[:3000]
    opened = [
        line.split()[1]
        for line in output.splitlines()
        if line.startswith("CONNECT") and line.endswith(" OPEN")
    ]
    assert opened == ["bob-llm"], output[:3000]
    # Only Bob's own processes: the sandbox's init, his server, the tool's shell.
    environ_lines = [line for line in output.splitlines() if line.startswith("/proc/")]
    assert 0 < len(environ_lines) <= 8, environ_lines
    # His agent still works in his own project, with his own LLM and key.
    assert (Path(bob_project.data_dir) / "workspace" / "written-by-bob.txt").read_text() == (
        "bob was here"
    )
    assert bob_stub.authorizations()[-1] == f"Bearer {BOB_KEY}"
    assert alice_stub.authorizations()[-1] == f"Bearer {ALICE_KEY}"


def _host_gateway() -> str | None:
    """The host's IPv4 default gateway (pasta gives the sandbox the same one)."""
    for line in Path("/proc/net/route").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == "00000000":
            return socket.inet_ntoa(int(fields[2], 16).to_bytes(4, "little"))
    return None


def _probe_inside(state, targets: dict[str, tuple[str, int]]) -> dict[str, str]:
    """Connect from inside the server's own network namespace (as its agent's tools
    would) to each target: "OPEN" or the error."""
    command = ["nsenter", "--target", str(server_pid(state)), "--net"]
    if os.geteuid() != 0:
        command += ["--user", "--preserve-credentials"]
    result = subprocess.run(
        [*command, sys.executable, "-I", "-c", PROBE, probe_listing(targets)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


@pytest.fixture
def host_services():
    """Listening sockets standing for services on the host: three on its loopback, one
    on its own address."""
    sockets = []
    for host in ("127.0.0.1", "127.0.0.1", "127.0.0.1", _host_address()):
        sock = socket.socket()
        sock.bind((host, 0))
        sock.listen(8)
        sockets.append(sock)
    yield [sock.getsockname()[:2] for sock in sockets]
    for sock in sockets:
        sock.close()


def test_sign_in_and_catalog_servers_are_sealed_too(tmp_path, settings, host_services):
    """OAuth flow and catalog servers start through the same runtime, with a spec that is
    not a project's: the sandbox does not depend on what the server is for. Seen from
    inside their network namespace: their own port answers; a user's endpoint on the
    host opens for that user's server only, and only its own port; DOCE_SANDBOX_ALLOW
    opens for every server; every other port on the host's loopback, the host's own
    address, PostgreSQL, Redis, cloud metadata and the gateway stay closed."""
    (_, endpoint), (_, allowed), (_, other), (host, on_host) = host_services
    gateway = _host_gateway()
    settings.DOCE_SANDBOX_ALLOW = [f"127.0.0.1:{allowed}"]
    runtime = LocalRuntime()
    flow = ServerSpec(
        name="oauth-sealed",
        data_dir=tmp_path / "oauth",
        model="opencode/big-pickle",
        password="pw-" + "z" * 30,
        custom_providers=(
            CustomProvider("ep", "Endpoint", f"http://127.0.0.1:{endpoint}/v1", ["m"]),
        ),
    )
    catalog = ServerSpec(
        name="catalog-sealed",
        data_dir=tmp_path / "catalog",
        model="opencode/big-pickle",
        password="pw-" + "y" * 30,
    )
    states = []
    try:
        for spec in (flow, catalog):
            states.append(runtime.start(spec))
            runtime.wait_healthy(states[-1], spec.password)
            assert_sealed(states[-1], own=[spec.layout.home, spec.layout.workspace])
        reach = {}
        for spec, state in zip((flow, catalog), states, strict=True):
            found = _probe_inside(
                state,
                {
                    "own-server": ("127.0.0.1", state.port),
                    "users-endpoint": ("127.0.0.1", endpoint),
                    "sandbox-allow": ("127.0.0.1", allowed),
                    "other-loopback-port": ("127.0.0.1", other),
                    "host-address": (host, on_host),
                    "other-server": ("127.0.0.1", next(s.port for s in states if s is not state)),
                    "postgresql": ("127.0.0.1", 5432),
                    "redis": ("127.0.0.1", 6379),
                    "metadata": ("169.254.169.254", 80),
                    # In a container deployment the gateway is the Docker host.
                    "gateway": (gateway or "192.0.2.1", 11434),
                },
            )
            reach[spec.name] = sorted(label for label, how in found.items() if how == "OPEN")
            # Routed away, not merely unanswered.
            assert found["metadata"] == "EHOSTUNREACH", found
            if gateway:
                assert found["gateway"] == "EHOSTUNREACH", found
        assert reach == {
            "oauth-sealed": ["own-server", "sandbox-allow", "users-endpoint"],
            "catalog-sealed": ["own-server", "sandbox-allow"],
        }
    finally:
        for state in states:
            runtime.remove(state)
    assert not any(runtime.is_alive(state) for state in states)


def test_without_the_sandbox_tools_nothing_starts(tmp_path, settings):
    """Fail closed: a missing tool is one clear line, and no server process exists."""
    settings.DOCE_BWRAP_BIN = str(tmp_path / "no-bwrap-here")
    runtime = LocalRuntime()
    spec = ServerSpec(
        name="closed",
        data_dir=tmp_path / "closed",
        model="opencode/big-pickle",
        password="pw-" + "c" * 30,
    )
    with pytest.raises(RuntimeFailure) as failure:
        runtime.start(spec)
    assert failure.value.retryable is False
    assert "bwrap not found" in failure.value.message
    assert "apt-get install bubblewrap passt" in failure.value.message
    assert "DOCE_SANDBOX=off" in failure.value.message
    assert not (spec.layout.data_dir / "server.json").exists()
