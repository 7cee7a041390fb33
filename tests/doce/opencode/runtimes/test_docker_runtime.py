"""The Docker Compose runtime against a fake ``docker`` CLI that records its calls."""

from __future__ import annotations

import json
import os
import stat

import pytest
import yaml

from doce.opencode.runtimes import RuntimeFailure, RuntimeStatus, get_runtime
from doce.opencode.runtimes.base import MAX_AUTH_FILE_BYTES
from doce.opencode.runtimes.docker import DockerComposeRuntime, render_compose
from doce.opencode.runtimes.limits import server_limits


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
    assert service["ports"] == [
        {"target": 4096, "published": str(state.port), "host_ip": "127.0.0.1", "protocol": "tcp"}
    ]
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
    assert "extra_hosts" not in service
    assert service["networks"] == ["sandbox"]
    assert compose["networks"] == {"sandbox": {"driver": "bridge"}}
    assert not {"SECRET_KEY", "DOCE_ENCRYPTION_KEYS", "DATABASE_URL"} & set(environment)

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


def test_the_docker_host_is_reachable_only_when_an_endpoint_names_it(runtime, make_spec):
    from doce.opencode.runtimes import CustomProvider
    from doce.opencode.runtimes.docker import render_compose

    ollama = CustomProvider("ollama", "Ollama", "http://host.docker.internal:11434/v1", ["m"])
    spec = make_spec(7, custom_providers=(ollama,))
    service = render_compose(spec, port=1234)["services"]["opencode"]
    assert service["extra_hosts"] == ["host.docker.internal:host-gateway"]


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
