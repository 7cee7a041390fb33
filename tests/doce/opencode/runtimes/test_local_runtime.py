"""The local runtime with a fake ``opencode`` binary: folders, environment, identity
checks and the stop ladder. tests/integration/test_opencode_*.py run the real one."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import threading
import time

import psutil
import pytest

from doce.opencode import OpenCodeClient
from doce.opencode.runtimes import RuntimeFailure, RuntimeState, RuntimeStatus, get_runtime
from doce.opencode.runtimes.base import MAX_AUTH_FILE_BYTES
from doce.opencode.runtimes.local import LocalRuntime
from tests.conftest import TIMEOUT_SCALE, deadline_in

SECRET_ENV = {
    "DATABASE_URL": "postgres://doce:db-password@127.0.0.1/doce",
    "SECRET_KEY": "django-secret-key-value-0123456789",
    "DOCE_ENCRYPTION_KEYS": "ZmDfcTF7_60GrrY167zsiPd67pEvs0aGOv2oasOM1Pg=",
    "OPENAI_API_KEY": "sk-proj-parent-env-key",
    "ANTHROPIC_API_KEY": "sk-ant-parent-env-key",
    "OPENROUTER_API_KEY": "sk-or-v1-parent-env-key",
}


@pytest.fixture
def runtime() -> LocalRuntime:
    return LocalRuntime()


def test_get_runtime_follows_the_setting(settings):
    settings.DOCE_RUNTIME = "local"
    assert isinstance(get_runtime(), LocalRuntime)
    with pytest.raises(ValueError):
        get_runtime("kubernetes")


def test_start_prepares_private_folders_and_a_clean_environment(
    runtime, fake_opencode, make_spec, started, monkeypatch
):
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    spec = make_spec(7)
    state = started.start(runtime, spec)
    assert runtime.wait_healthy(state, spec.password)["healthy"] is True

    layout = spec.layout
    for folder in (layout.data_dir, layout.workspace, layout.home):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    config = json.loads((layout.workspace / "opencode.json").read_text())
    assert config["model"] == "stub/stub-model"

    record = fake_opencode.record(layout.home)
    assert record["argv"][1:] == ["serve", "--hostname", "127.0.0.1", "--port", str(state.port)]
    assert record["cwd"] == str(layout.workspace.resolve()) == state.directory
    assert record["umask"] == 0o077
    env = record["env"]
    home = str(layout.home.resolve())
    assert env["HOME"] == home
    assert env["XDG_DATA_HOME"] == f"{home}/.local/share"
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME", "TMPDIR"):
        assert env[name].startswith(home + "/")
    assert env["OPENCODE_SERVER_PASSWORD"] == spec.password
    assert env["OPENCODE_SERVER_USERNAME"] == "opencode"
    assert env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert env["OPENCODE_DISABLE_AUTOUPDATE"] == "1"
    assert env["npm_config_offline"] == "true"
    leaked = set(env) & (set(SECRET_ENV) | {"DJANGO_SETTINGS_MODULE", "DOCE_TEST_DATA_DIR"})
    assert not leaked
    assert not any(value in json.dumps(env) for value in SECRET_ENV.values())
    # Own process group: a stop reaches the server's helpers too.
    assert os.getpgid(state.pid) == state.pid
    assert stat.S_IMODE(layout.log_file.stat().st_mode) == 0o600


def test_status_stop_and_restart(runtime, fake_opencode, make_spec, started):
    spec = make_spec()
    state = started.start(runtime, spec)
    runtime.wait_healthy(state, spec.password)
    assert runtime.status(state) is RuntimeStatus.RUNNING
    assert RuntimeState.from_dict(json.loads(json.dumps(state.to_dict()))) == state

    stopped = runtime.stop(state)
    assert not _running(state.pid)
    assert stopped.active is False and stopped.pid is None
    assert runtime.status(stopped) is RuntimeStatus.STOPPED
    assert runtime.stop(stopped) == stopped  # twice is fine

    again = started.start(runtime, spec)
    assert runtime.ensure_started(spec, again) is again  # a redelivered task keeps it
    runtime.wait_healthy(again, spec.password)


def test_a_server_that_dies_is_reported_crashed(runtime, fake_opencode, make_spec, started):
    spec = make_spec()
    state = started.start(runtime, spec)
    runtime.wait_healthy(state, spec.password)
    os.kill(state.pid, 9)
    deadline = deadline_in(5)
    while runtime.status(state) is RuntimeStatus.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runtime.status(state) is RuntimeStatus.CRASHED
    replacement = runtime.ensure_started(spec, state)
    started.items.append((runtime, replacement))
    assert replacement.pid != state.pid


def test_a_crash_at_start_is_reported_with_the_log(runtime, fake_opencode, make_spec, started):
    fake_opencode.behave(crash=True)
    spec = make_spec()
    state = started.start(runtime, spec)
    began = time.monotonic()
    with pytest.raises(RuntimeFailure) as info:
        runtime.wait_healthy(state, spec.password, timeout=15)
    assert time.monotonic() - began < 5  # noticed the exit, did not wait for the deadline
    assert "crashing on purpose" in info.value.log_tail
    assert runtime.status(state) is RuntimeStatus.CRASHED


def test_the_wrong_password_is_not_this_projects_server(runtime, fake_opencode, make_spec, started):
    spec = make_spec()
    state = started.start(runtime, spec)
    with pytest.raises(RuntimeFailure, match="another password"):
        runtime.wait_healthy(state, "not-the-password")


@pytest.mark.parametrize(("ignored", "signal_sent"), [(1, "SIGTERM"), (5, "SIGKILL")])
def test_stop_escalates_when_sigterm_is_ignored(
    runtime, fake_opencode, make_spec, started, caplog, ignored, signal_sent
):
    fake_opencode.behave(ignore_term=ignored, child=True)
    spec = make_spec()
    state = started.start(runtime, spec)
    runtime.wait_healthy(state, spec.password)
    helpers = psutil.Process(state.pid).children(recursive=True)
    assert helpers, "the fake should have started a helper"
    with caplog.at_level(logging.WARNING, logger="doce.opencode.runtimes.local"):
        runtime.stop(state)
    assert f"outlived SIGTERM; sending {signal_sent}" in caplog.text
    assert not _running(state.pid)
    assert not any(_running(helper.pid) for helper in helpers)


def test_stop_never_signals_a_process_that_is_not_the_projects(
    runtime, fake_opencode, make_spec, started, tmp_path
):
    spec = make_spec()
    state = started.start(runtime, spec)
    runtime.wait_healthy(state, spec.password)
    bystander = subprocess.Popen(["sleep", "30"], cwd=tmp_path.parent)
    try:
        created = psutil.Process(bystander.pid).create_time()
        impostors = [
            # A reused pid: right create time, but not an opencode server on that port.
            RuntimeState(
                **{**state.to_dict(), "pid": bystander.pid, "process_started_at": created}
            ),
            # The server's pid with another start time: the pid was reused.
            RuntimeState(**{**state.to_dict(), "process_started_at": created - 3600}),
            # The right process but another project's port.
            RuntimeState(**{**state.to_dict(), "port": state.port + 1}),
        ]
        for impostor in impostors:
            assert runtime.status(impostor) is RuntimeStatus.CRASHED
            runtime.stop(impostor)
        assert bystander.poll() is None
        assert runtime.status(state) is RuntimeStatus.RUNNING
    finally:
        bystander.kill()
        bystander.wait()


def test_a_lost_state_does_not_leave_two_servers(runtime, fake_opencode, make_spec, started):
    spec = make_spec()
    first = started.start(runtime, spec)
    runtime.wait_healthy(first, spec.password)
    second = started.start(runtime, spec)  # the caller lost ``first``
    assert runtime.status(first) is not RuntimeStatus.RUNNING
    runtime.wait_healthy(second, spec.password)
    with OpenCodeClient(second.base_url, spec.password) as client:
        assert client.health()["healthy"]


def test_remove_deletes_only_a_prepared_folder(
    runtime, fake_opencode, make_spec, started, tmp_path
):
    spec = make_spec()
    state = started.start(runtime, spec)
    runtime.remove(state)
    assert not spec.layout.data_dir.exists()

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("x")
    runtime.remove(RuntimeState(runtime="local", data_dir=str(precious), port=1, directory="/"))
    assert (precious / "keep.txt").exists()


def test_a_missing_binary_is_a_permanent_failure(runtime, settings, make_spec):
    settings.DOCE_OPENCODE_BIN = "/nonexistent/opencode"
    with pytest.raises(RuntimeFailure, match="binary was not found") as info:
        runtime.start(make_spec())
    assert info.value.retryable is False


def test_spec_validation_and_repr(make_spec):
    spec = make_spec()
    assert spec.password not in repr(spec)
    with pytest.raises(ValueError):
        make_spec(model="gpt-4o")
    with pytest.raises(ValueError):
        make_spec("../etc")
    with pytest.raises(ValueError):
        make_spec(password="")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_server_still_loading_its_program_counts_as_alive(
    runtime, fake_opencode, make_spec, started, monkeypatch
):
    # Right after Popen returns, /proc/<pid>/cmdline can still be empty (the kernel has not
    # mapped the new program's arguments yet); on a busy machine a health wait then took
    # the starting server for a dead one.
    spec = make_spec()
    state = started.start(runtime, spec)
    real = psutil.Process.cmdline
    calls = {"n": 0}

    def loading_then_loaded(self):
        calls["n"] += 1
        return [] if calls["n"] < 3 else real(self)

    monkeypatch.setattr(psutil.Process, "cmdline", loading_then_loaded)
    assert runtime.is_alive(state)
    assert calls["n"] >= 3


def test_auth_json_is_read_back_only_as_a_plain_file_of_its_own(runtime, make_spec, tmp_path):
    """The agent can replace its auth.json: a link out of the server's folder, a pipe
    that never ends or a huge file is not read."""
    layout = make_spec(8).layout
    layout.prepare()
    state = RuntimeState(runtime="local", data_dir=str(layout.data_dir), port=1, directory="")
    assert runtime.auth_file_read(state) is None  # none yet
    layout.auth_file.parent.mkdir(parents=True)
    layout.auth_file.write_bytes(b'{"openai": {"type": "oauth"}}')
    assert runtime.auth_file_read(state) == b'{"openai": {"type": "oauth"}}'

    layout.auth_file.write_bytes(b" " * (MAX_AUTH_FILE_BYTES + 1))
    assert runtime.auth_file_read(state) is None
    layout.auth_file.unlink()
    (tmp_path / "other.json").write_text('{"openai": {"type": "oauth"}}')
    layout.auth_file.symlink_to(tmp_path / "other.json")
    assert runtime.auth_file_read(state) is None
    layout.auth_file.unlink()
    os.mkfifo(layout.auth_file)
    assert runtime.auth_file_read(state) is None  # returns at once: no writer is waited for


def test_a_server_stopped_by_another_process_leaves_no_zombie(
    runtime, fake_opencode, make_spec, started
):
    # A web request or another worker stops a server by pid (through psutil): the process
    # that spawned it must still collect its exit status at once, not at its next start,
    # or it stays a zombie under that worker.
    spec = make_spec()
    state = started.start(runtime, spec)
    runtime.wait_healthy(state, spec.password)
    collectors = [t for t in threading.enumerate() if t.name == f"opencode-{state.pid}-exit"]
    assert collectors, "nothing in this process waits for the server's exit"

    os.killpg(state.pid, signal.SIGKILL)

    collectors[0].join(timeout=10 * TIMEOUT_SCALE)
    assert not psutil.pid_exists(state.pid), "the stopped server stayed a zombie"
