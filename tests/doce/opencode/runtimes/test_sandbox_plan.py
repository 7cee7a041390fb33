"""The sandbox's plan from doce's settings, and the bwrap / pasta command lines it turns
into. What the sandbox really stops is proven with the real binary in
tests/integration/test_sandbox_isolation.py."""

from __future__ import annotations

import json

import pytest

from doce.opencode.runtimes import CustomProvider, RuntimeFailure, sandbox, sandbox_plan


def _plan(**overrides) -> sandbox.Plan:
    values = {
        "workspace": "/data/projects/7/workspace",
        "home": "/data/projects/7/home",
        "port": 41234,
        "etc_dir": "/data/sandbox/etc",
        "read_only": ["/opt/opencode/bin/opencode"],
        "allow_loopback_ports": [11434],
        "allow_hosts": ["192.168.1.20"],
        "tools": {"bwrap": "/usr/bin/bwrap", "pasta": "/usr/bin/pasta", "nsenter": "x", "ip": "ip"},
    }
    values.update(overrides)
    return sandbox.Plan(**values)


def test_loopback_endpoints_become_ports_and_lan_hosts_addresses(settings):
    settings.DOCE_SANDBOX_ALLOW = ["127.0.0.1:9000"]
    ports, hosts = sandbox_plan.reachable(
        [
            "http://127.0.0.1:11434/v1",
            "http://localhost:8080/v1",
            "http://[::1]:7000/v1",
            "https://api.example.com/v1",  # public: nothing to open
            "http://192.168.1.20:8000/v1",
            "//127.0.0.1:9000",
            "not a url at all",
        ]
    )
    assert ports == [7000, 8080, 9000, 11434]
    assert hosts == ["192.168.1.20"]


def test_the_endpoints_come_from_the_user_the_operator_and_the_setting(settings, tmp_path):
    config = tmp_path / "operator.json"
    plugin = tmp_path / "plugin.js"
    plugin.write_text("export default async () => ({})")
    config.write_text(
        json.dumps(
            {
                "plugin": [f"file://{plugin}", "some-npm-plugin"],
                "provider": {"shared": {"options": {"baseURL": "http://127.0.0.1:5555/v1"}}},
            }
        )
    )
    settings.DOCE_OPENCODE_CONFIG = str(config)
    settings.DOCE_SANDBOX_ALLOW = ["127.0.0.1:6666"]
    settings.DOCE_OPENCODE_NPM_REGISTRY = "http://127.0.0.1:7777/"
    spec_urls = sandbox_plan._endpoints(
        type(
            "Spec",
            (),
            {"custom_providers": [CustomProvider("o", "O", "http://127.0.0.1:11434/v1")]},
        ),
        json.loads(config.read_text()),
    )
    assert sandbox_plan.reachable(spec_urls)[0] == [5555, 6666, 7777, 11434]
    assert sandbox_plan.plugin_files(json.loads(config.read_text())) == [str(plugin)]


@pytest.mark.parametrize("as_root", [True, False])
def test_bwrap_seals_everything_but_the_servers_own_folders(as_root):
    args = sandbox.bwrap_args(_plan(), as_root=as_root, info_fd=5, block_fd=6)
    line = " ".join(args)
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--cap-drop ALL"):
        assert flag in line
    assert "--share-net" not in line
    assert "--bind /data/projects/7/home /data/projects/7/home" in line
    assert "--bind /data/projects/7/workspace /data/projects/7/workspace" in line
    assert "--ro-bind /opt/opencode/bin/opencode /opt/opencode/bin/opencode" in line
    assert "--ro-bind /usr /usr" in line and "--remount-ro /" in line
    writable = [args[i + 1] for i, arg in enumerate(args) if arg == "--bind"]
    assert writable == ["/data/projects/7/home", "/data/projects/7/workspace"]
    # /tmp is a fresh tmpfs laid before the binds (which may live under /tmp).
    assert line.index("--tmpfs /tmp") < line.index("--bind ")
    assert ("--uid 1000" in line) is as_root


@pytest.mark.parametrize("as_root", [True, False])
def test_pasta_forwards_the_server_port_inward_and_only_allowed_ports_outward(as_root):
    args = sandbox.pasta_args(_plan(), 4321, as_root=as_root)
    line = " ".join(args)
    assert "--no-map-gw" in line
    assert "--tcp-ports 127.0.0.1/41234" in line  # the host's loopback only
    assert "--tcp-ns 11434" in line and "--udp-ns none" in line and "--udp-ports none" in line
    assert line.endswith("--netns /proc/4321/ns/net") is as_root
    assert ("--runas 0" in line) is as_root
    nothing = " ".join(sandbox.pasta_args(_plan(allow_loopback_ports=[]), 1, as_root=False))
    assert "--tcp-ns none" in nothing


def test_routes_block_the_hosts_networks_and_let_allowed_hosts_past(monkeypatch):
    monkeypatch.setattr(
        sandbox,
        "host_networks",
        lambda ip="ip": (["10.1.2.3/32", "172.18.0.0/16", "fd00::2/128"], "eth0"),
    )
    script = sandbox.route_script(_plan(), "10.1.2.1")
    lines = script.splitlines()
    assert "route add unreachable 10.1.2.3/32" in lines
    assert "route add unreachable 172.18.0.0/16" in lines  # e.g. the database's network
    assert "route add unreachable fd00::2/128" in lines
    assert "route add unreachable 169.254.0.0/16" in lines  # cloud metadata
    assert f"route replace {sandbox.DNS_ADDRESS}/32 via 10.1.2.1" in lines
    assert "route replace 192.168.1.20/32 via 10.1.2.1" in lines
    # The gateway carries the traffic but is no destination: in a container deployment
    # it is the Docker host, whose own services (an Ollama on 0.0.0.0) are not the
    # sandbox's. Blocked after the routes through it (the kernel checks a next hop).
    assert lines[-1] == "route add unreachable 10.1.2.1/32"


def test_a_gateway_an_endpoint_names_stays_reachable(monkeypatch):
    monkeypatch.setattr(sandbox, "host_networks", lambda ip="ip": (["10.1.2.3/32"], "eth0"))
    lines = sandbox.route_script(_plan(allow_hosts=["10.1.2.1"]), "10.1.2.1").splitlines()
    assert "route add unreachable 10.1.2.1/32" not in lines
    assert "route replace 10.1.2.1/32 via 10.1.2.1" in lines


def test_the_synthesised_etc_names_no_host_account(tmp_path):
    sandbox.write_etc(tmp_path / "etc")
    passwd = (tmp_path / "etc" / "passwd").read_text()
    assert "opencode:x:1000" in passwd and "postgres" not in passwd
    assert (tmp_path / "etc" / "resolv.conf").read_text() == f"nameserver {sandbox.DNS_ADDRESS}\n"
    assert oct((tmp_path / "etc").stat().st_mode & 0o777) == "0o700"


def test_a_machine_without_user_namespaces_is_refused_with_one_line(settings, tmp_path):
    """The tools are installed but bwrap cannot make namespaces (user namespaces off, a
    container's seccomp profile): fail closed, saying what to enable."""
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\necho 'bwrap: No permissions to create a new namespace' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    settings.DOCE_BWRAP_BIN = str(fake)
    assert sandbox_plan.problem() == (
        "bwrap cannot create namespaces here (bwrap: No permissions to create a new namespace)"
    )
    with pytest.raises(RuntimeFailure) as failure:
        sandbox_plan.require()
    assert failure.value.retryable is False
    assert "allow unprivileged user namespaces" in failure.value.message
    assert "\n" not in failure.value.message


def test_the_sandbox_opens_only_what_the_endpoint_rule_allows(settings):
    """Defence in depth (doce.endpoints): whatever a row says, doce's services stay
    closed, and a user's endpoint on the machine opens only for staff or when listed."""
    settings.DOCE_ENDPOINT_ALLOW = ["127.0.0.1:9100"]
    settings.DOCE_PORT = 8000
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.DOCE_SANDBOX_ALLOW = ["127.0.0.1:6379"]  # even the operator's own setting
    ports = (6379, 8000, 21000, 11434, 9100)
    users = [(f"http://127.0.0.1:{port}/v1", False) for port in ports]
    staff = [(url, True) for url, _ in users]
    assert sandbox_plan.reachable(users) == ([9100], [])
    assert sandbox_plan.reachable(staff) == ([9100, 11434], [])
    assert sandbox_plan.reachable([("//127.0.0.1:6379", True)]) == ([], [])
    lan = "http://10.20.30.40:8000/v1"
    assert sandbox_plan.reachable([(lan, False)]) == ([], [])
    assert sandbox_plan.reachable([(lan, True)]) == ([], ["10.20.30.40"])


def test_a_specs_endpoints_carry_whether_their_owner_is_trusted(settings):
    settings.DOCE_SANDBOX_ALLOW = []
    settings.DOCE_OPENCODE_NPM_REGISTRY = ""
    settings.DOCE_ENDPOINT_ALLOW = []
    provider = CustomProvider("o", "O", "http://127.0.0.1:11434/v1")
    for trusted in (False, True):
        spec = type("Spec", (), {"custom_providers": [provider], "trusted_endpoints": trusted})
        assert sandbox_plan._endpoints(spec, {}) == [("http://127.0.0.1:11434/v1", trusted)]
        assert sandbox_plan.reachable(sandbox_plan._endpoints(spec, {}))[0] == (
            [11434] if trusted else []
        )


def test_an_allowed_host_that_is_one_of_the_hosts_own_addresses_replaces_its_block(
    monkeypatch,
):
    """A staff user's Ollama on the host's LAN address: the block of that /32 is replaced
    by the route through the gateway (an add would fail, and the server never start)."""
    monkeypatch.setattr(sandbox, "host_networks", lambda ip="ip": (["10.1.2.3/32"], "eth0"))
    lines = sandbox.route_script(_plan(allow_hosts=["10.1.2.3"]), "10.1.2.1").splitlines()
    assert lines.index("route add unreachable 10.1.2.3/32") < lines.index(
        "route replace 10.1.2.3/32 via 10.1.2.1"
    )
