"""The Docker Compose runtime against a fake ``docker`` CLI that records its calls."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from doce.opencode.runtimes import (
    CustomProvider,
    RuntimeFailure,
    RuntimeStatus,
    docker,
    get_runtime,
    sandbox,
)
from doce.opencode.runtimes.base import MAX_AUTH_FILE_BYTES
from doce.opencode.runtimes.docker import DockerComposeRuntime, render_compose
from doce.opencode.runtimes.limits import server_limits

_READ_NAMESERVERS = docker._nameservers  # the real one; the fixture below stands in


@pytest.fixture(autouse=True)
def host(monkeypatch):
    """The Docker host's addresses as ``ip`` lists them, and its resolver."""
    monkeypatch.setattr(
        sandbox,
        "host_networks",
        lambda ip="ip": (
            ["172.17.0.0/16", "172.17.0.1/32", "203.0.113.5/32", "fd00::2/128"],
            "eth0",
        ),
    )
    monkeypatch.setattr(docker, "_nameservers", lambda: {"10.255.255.53"})


@pytest.fixture
def runtime(settings) -> DockerComposeRuntime:
    settings.DOCE_OPENCODE_IMAGE = "registry.example.com/doce:1.2.3"
    return DockerComposeRuntime()


def test_get_runtime_follows_the_setting(settings):
    settings.DOCE_RUNTIME = "docker"
    assert isinstance(get_runtime(), DockerComposeRuntime)


def test_up_renders_a_valid_compose_file_and_runs_compose(
    runtime, fake_docker, make_spec, monkeypatch
):
    monkeypatch.setenv("SECRET_KEY", "django-secret-key-value-0123456789")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-proj-parent-env-key")
    spec = make_spec(42)
    state = runtime.start(spec)

    compose_file = spec.layout.data_dir / "compose.yaml"
    assert [call["argv"] for call in fake_docker.calls] == [
        ["compose", "-p", "doce_42", "-f", str(compose_file), "up", "-d", "--remove-orphans"]
    ]
    call = fake_docker.calls[0]
    # The password reaches compose through its environment, nothing else of doce's does.
    assert call["env"]["OPENCODE_SERVER_PASSWORD"] == spec.password
    assert not {"SECRET_KEY", "OPENAI_API_KEY", "DATABASE_URL"} & set(call["env_names"])

    assert stat.S_IMODE(compose_file.stat().st_mode) == 0o600
    text = compose_file.read_text()
    assert spec.password not in text
    compose = yaml.safe_load(text)
    assert compose["name"] == "doce_42"
    service = compose["services"]["opencode"]
    assert service["image"] == "registry.example.com/doce:1.2.3"
    assert service["entrypoint"] == ["/app/node_modules/opencode-linux-x64/bin/opencode"]
    assert service["command"] == ["serve", "--hostname", "0.0.0.0", "--port", "4096"]
    # The network namespace is net's: the port is published there, on loopback only.
    net = compose["services"]["net"]
    assert net["ports"] == [
        {"target": 4096, "published": str(state.port), "host_ip": "127.0.0.1", "protocol": "tcp"}
    ]
    assert "ports" not in service and "networks" not in service
    assert service["network_mode"] == "service:net"
    assert service["depends_on"] == {"net": {"condition": "service_healthy"}}
    # net: NET_ADMIN and no other capability; it runs the routes, then sleeps.
    assert net["cap_drop"] == ["ALL"] and net["cap_add"] == ["NET_ADMIN"]
    assert net["security_opt"] == ["no-new-privileges:true"] and net["read_only"] is True
    assert net["image"] == service["image"] and net["entrypoint"][:2] == ["/bin/sh", "-c"]
    assert net["healthcheck"]["test"] == ["CMD", "test", "-e", docker.ROUTES_READY]
    assert "volumes" not in net and "environment" not in net
    assert net["sysctls"]["net.ipv6.conf.all.disable_ipv6"] == 1
    assert service["working_dir"] == "/workspace"
    volumes = {volume["target"]: volume for volume in service["volumes"]}
    assert volumes["/workspace"] == {
        "type": "bind",
        "source": str(spec.layout.workspace.resolve()),
        "target": "/workspace",
    }
    assert volumes["/home/doce"]["type"] == "volume"
    assert compose["volumes"] == {"opencode_home": {}}
    assert volumes["/home/doce"]["source"] == "opencode_home"
    environment = dict(item.partition("=")[::2] for item in service["environment"])
    assert environment["OPENCODE_SERVER_PASSWORD"] == ""  # bare name: value from compose's env
    assert "OPENCODE_SERVER_PASSWORD=" not in text
    assert environment["HOME"] == "/home/doce"
    assert environment["XDG_DATA_HOME"] == "/home/doce/.local/share"
    assert environment["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert environment["OPENCODE_DISABLE_AUTOUPDATE"] == "1"
    assert environment["npm_config_offline"] == "true"
    assert service["restart"] == "no" and service["init"] is True
    # Sealed: not root, no capability, no new privileges, no Docker socket, no way to
    # the host unless an endpoint asks for it, a network of its own.
    assert service["user"] == "1000:1000"
    assert service["cap_drop"] == ["ALL"]
    assert service["security_opt"] == ["no-new-privileges:true"]
    # Bounded as limits.server_limits() says (tests/settings.py leaves them to the machine).
    limits = server_limits()
    assert service["mem_limit"] == service["memswap_limit"] == limits.memory_bytes
    assert service["pids_limit"] == limits.pids and service["cpus"] == limits.cpus
    assert service["oom_score_adj"] > 0
    assert service["read_only"] is True
    assert service["tmpfs"] == [
        f"/tmp:size={min(limits.memory_bytes, limits.disk_bytes)},mode=1777"
    ]
    assert "docker.sock" not in text and "privileged" not in service
    assert "extra_hosts" not in service and "extra_hosts" not in net
    assert net["networks"] == ["sandbox"]
    assert compose["networks"] == {"sandbox": {"driver": "bridge", "enable_ipv6": False}}
    assert not {"SECRET_KEY", "DOCE_ENCRYPTION_KEYS", "DATABASE_URL"} & set(environment)
    # The site's dev server: PORT inside, reached by devport's socket, never published.
    assert environment["PORT"] == str(docker.DEV_PORT)
    devport = compose["services"]["devport"]
    assert devport["network_mode"] == "service:net" and "ports" not in devport
    assert devport["entrypoint"] == [
        "socat",
        "UNIX-LISTEN:/run/doce-devport/dev.sock,fork,unlink-early,mode=600,max-children=64",
        f"TCP4:127.0.0.1:{docker.DEV_PORT},connect-timeout=2",
    ]
    assert devport["volumes"] == [
        {
            "type": "bind",
            "source": str(spec.layout.dev_socket.parent.resolve()),
            "target": "/run/doce-devport",
        }
    ]
    assert devport["cap_drop"] == ["ALL"] and "cap_add" not in devport
    assert devport["read_only"] is True and devport["security_opt"] == net["security_opt"]
    assert devport["user"] == (
        "1000:1000" if os.geteuid() == 0 else f"{os.geteuid()}:{os.getegid()}"
    )
    assert devport["mem_limit"] == devport["memswap_limit"] and devport["pids_limit"] > 64
    assert stat.S_IMODE(spec.layout.dev_socket.parent.stat().st_mode) == 0o700
    assert runtime.dev_server(state) == (docker.DEV_PORT, spec.layout.dev_socket)
    assert all(volume["target"] != "/run/doce-devport" for volume in service["volumes"])

    # The workspace opencode.json is written as for the local runtime.
    config = json.loads((spec.layout.workspace / "opencode.json").read_text())
    assert config["model"] == "stub/stub-model"
    assert state.container_name == "doce_42_opencode" and state.directory == "/workspace"
    assert state.base_url == f"http://127.0.0.1:{state.port}"
    if os.geteuid() == 0:  # doce as root hands the workspace to the image's user
        assert (spec.layout.workspace.stat().st_uid, spec.layout.workspace.stat().st_gid) == (
            1000,
            1000,
        )


def _script(compose: dict) -> str:
    """net's shell script as the shell gets it (compose turns "$$" into "$")."""
    return compose["services"]["net"]["entrypoint"][2].replace("$$", "$")


def test_the_routes_block_the_host_and_private_networks(runtime, make_spec):
    """net's script: the routes past the blocks first, then the blocks (the local
    sandbox's, the private ranges, the gateway), the server's replies, the ready file."""
    script = _script(render_compose(make_spec(7), port=1234))
    lines = script.splitlines()
    assert lines[:3] == ["set -eu", "set -- $(ip -4 route show default)", 'gw="$3"']
    assert "host.docker.internal" not in script
    routes = lines[lines.index("ip -batch - <<ROUTES") + 1 : lines.index("ROUTES")]
    assert routes[0] == "route replace 10.255.255.53/32 via $gw"  # the host's resolver
    blocks = [line.split()[3] for line in routes if " unreachable " in line]
    # The host's addresses and other networks (as the local sandbox finds them), link-local
    # (cloud metadata), where Docker and LANs put networks, and the gateway: IPv4 only.
    assert {"172.17.0.0/16", "172.17.0.1/32", "203.0.113.5/32", "169.254.0.0/16"} <= set(blocks)
    assert set(docker.PRIVATE_NETWORKS) <= set(blocks)
    assert blocks[-1] == "$gw/32" and not [block for block in blocks if ":" in block]
    assert all(line.endswith(f"metric {docker.BLOCK_METRIC}") for line in routes[1:-3])
    assert routes[-2:] == [
        "route replace default via $gw table 100",
        "rule add ipproto 6 sport 4096 lookup 100 pref 100",
    ]
    assert lines[-2:] == [f"touch {docker.ROUTES_READY}", "exec sleep infinity"]
    assert "$" not in render_compose(make_spec(7), port=1234)["services"]["net"]["entrypoint"][
        2
    ].replace("$$", "")  # every "$" escaped from compose


def test_a_staff_users_endpoint_on_the_docker_host_is_mapped_and_routed(runtime, make_spec):
    ollama = CustomProvider("ollama", "Ollama", "http://host.docker.internal:11434/v1", ["m"])
    compose = render_compose(
        make_spec(7, custom_providers=(ollama,), trusted_endpoints=True), port=1234
    )
    assert compose["services"]["net"]["extra_hosts"] == ["host.docker.internal:host-gateway"]
    assert "extra_hosts" not in compose["services"]["opencode"]
    script = _script(compose)
    assert "set -- $(getent ahostsv4 host.docker.internal)" in script
    assert "route replace $host_gateway/32 via $gw" in script.splitlines()


def test_a_refused_endpoint_on_the_docker_host_maps_nothing(runtime, make_spec, settings):
    """doce.endpoints decides again: not staff and not listed, or doce's own service."""
    ollama = CustomProvider("ollama", "Ollama", "http://host.docker.internal:11434/v1", ["m"])
    redis = CustomProvider("redis", "Redis", "http://host.docker.internal:6379/v1", ["m"])
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.DOCE_ENDPOINT_ALLOW = []  # the test settings allow loopback for everyone
    for spec in (
        make_spec(7, custom_providers=(ollama,)),
        make_spec(8, custom_providers=(redis,), trusted_endpoints=True),
    ):
        compose = render_compose(spec, port=1234)
        assert "extra_hosts" not in compose["services"]["net"]
        assert "host_gateway" not in _script(compose)
    settings.DOCE_ENDPOINT_ALLOW = ["127.0.0.1:11434"]  # the operator allows it for all
    compose = render_compose(make_spec(9, custom_providers=(ollama,)), port=1234)
    assert compose["services"]["net"]["extra_hosts"] == ["host.docker.internal:host-gateway"]


def test_a_pooled_server_serves_only_specs_that_need_no_more_reach(runtime, make_spec):
    ollama = CustomProvider("ollama", "Ollama", "http://host.docker.internal:11434/v1", ["m"])
    lan = CustomProvider("lan", "LAN", "http://192.168.1.20:8000/v1", ["m"])
    plain = make_spec(1)
    host = make_spec(2, custom_providers=(ollama,), trusted_endpoints=True)
    on_lan = make_spec(3, custom_providers=(lan,), trusted_endpoints=True)
    assert runtime.can_serve(plain, plain) and runtime.can_serve(host, plain)
    assert not runtime.can_serve(plain, host)
    assert not runtime.can_serve(plain, on_lan) and runtime.can_serve(on_lan, on_lan)
    assert "route replace 192.168.1.20/32 via $gw" in _script(render_compose(on_lan, port=1))


def test_a_host_without_ip_refuses_with_one_line(runtime, make_spec, monkeypatch):
    def missing(ip="ip"):
        raise FileNotFoundError(2, "No such file or directory", "ip")

    monkeypatch.setattr(sandbox, "host_networks", missing)
    with pytest.raises(RuntimeFailure, match="install iproute2") as info:
        render_compose(make_spec(7), port=1234)
    assert info.value.retryable is False


def test_nameservers_are_the_hosts_non_loopback_ipv4_resolvers(monkeypatch, tmp_path):
    first = tmp_path / "resolv.conf"
    first.write_text("# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch x\n")
    second = tmp_path / "systemd.conf"
    second.write_text("nameserver 192.168.1.1\nnameserver fd00::1\nnameserver bogus\n")
    monkeypatch.setattr(docker, "RESOLV_CONF_FILES", (str(first), str(second), "/nonexistent"))
    assert _READ_NAMESERVERS() == {"10.0.0.2", "192.168.1.1"}


def test_status_stop_and_down(runtime, fake_docker, make_spec):
    spec = make_spec(5)
    state = runtime.start(spec)
    assert runtime.status(state) is RuntimeStatus.RUNNING
    assert fake_docker.calls[-1]["argv"] == [
        "inspect",
        "--format",
        "{{.State.Running}}",
        "doce_5_opencode",
    ]

    fake_docker.crash_container()
    assert runtime.status(state) is RuntimeStatus.CRASHED

    stopped = runtime.stop(state)
    assert fake_docker.calls[-1]["argv"][-1] == "stop"
    assert fake_docker.calls[-1]["argv"][:3] == ["compose", "-p", "doce_5"]
    assert runtime.status(stopped) is RuntimeStatus.STOPPED

    runtime.remove(stopped)
    assert fake_docker.calls[-1]["argv"][-3:] == ["down", "-v", "--remove-orphans"]
    assert not spec.layout.data_dir.exists()
    assert runtime.status(state) is RuntimeStatus.CRASHED  # no such container any more


def test_compose_failures_are_reported(runtime, fake_docker, make_spec):
    fake_docker.fail_next()
    with pytest.raises(RuntimeFailure, match="no such image") as info:
        runtime.start(make_spec())
    assert info.value.retryable is True


def test_a_missing_docker_cli_is_a_permanent_failure(runtime, settings, make_spec):
    settings.DOCE_DOCKER_BIN = "docker-that-does-not-exist"
    with pytest.raises(RuntimeFailure, match="was not found") as info:
        runtime.start(make_spec())
    assert info.value.retryable is False


def test_names_are_safe_for_compose(make_spec):
    compose = render_compose(make_spec("Proj_7-A"), port=4100)
    assert compose["name"] == "doce_proj_7-a"
    assert yaml.safe_load(yaml.safe_dump(compose)) == compose
    assert os.sep not in compose["services"]["opencode"]["container_name"]


def test_auth_json_is_read_back_with_docker_cp(runtime, fake_docker, make_spec, settings, tmp_path):
    """Refreshed OAuth tokens live in the container's home volume: ``docker cp`` (the
    daemon reads the file, nothing runs inside the container) gives them back."""
    state = runtime.start(make_spec(7))
    assert runtime.auth_file_read(state) is None  # no auth.json yet
    fake_docker.serve_file(b'{"openai": {"type": "oauth"}}')
    assert runtime.auth_file_read(state) == b'{"openai": {"type": "oauth"}}'
    home = settings.DOCE_OPENCODE_IMAGE_HOME
    assert fake_docker.calls[-1]["argv"] == [
        "cp",
        f"doce_7_opencode:{home}/.local/share/opencode/auth.json",
        "-",
    ]
    fake_docker.serve_file(b"x" * (MAX_AUTH_FILE_BYTES + 1))
    assert runtime.auth_file_read(state) is None  # not a few credentials
    (tmp_path / "elsewhere").write_text("{}")
    fake_docker.serve_file(link_to=tmp_path / "elsewhere")
    assert runtime.auth_file_read(state) is None  # a link is not a plain file


def test_a_socket_path_too_long_for_unix_sockets_is_no_dev_server(
    runtime, fake_docker, make_spec, tmp_path, caplog
):
    """The start says so once; the preview then serves the static files only."""
    state = runtime.start(make_spec(7, data_dir=tmp_path / ("d" * 120)))
    assert "shorter DOCE_DATA_DIR" in caplog.text
    assert runtime.dev_server(state) is None
