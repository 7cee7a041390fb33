"""The bounds from doce's side (sandbox_limits.py): what a plan carries, what the
machine cannot enforce, and DOCE_LIMITS=required refusing to start servers for it.
What the kernel does with them is proven in tests/integration/test_server_bounds.py."""

from __future__ import annotations

import pytest

from doce.opencode.runtimes import Layout, RuntimeFailure, sandbox_bounds, sandbox_limits

MIB = 1024 * 1024


@pytest.fixture(autouse=True)
def fresh_findings():
    sandbox_limits._problems.cache_clear()
    yield
    sandbox_limits._problems.cache_clear()


def _machine(monkeypatch, problems: list[str]) -> None:
    def create(group):
        group.problems = list(problems)

    monkeypatch.setattr(sandbox_bounds.ServerGroup, "create", create)


def test_the_plan_carries_the_settings_bounds_and_where_to_say_why(settings, tmp_path):
    settings.DOCE_SERVER_MEMORY_LIMIT_MB = "1536"
    settings.DOCE_SERVER_PIDS_LIMIT = "300"
    settings.DOCE_SERVER_CPUS = "0.5"
    settings.DOCE_SERVER_DISK_LIMIT_MB = "2048"
    bounds = sandbox_limits.plan_bounds(Layout(tmp_path))
    assert (bounds.memory_bytes, bounds.pids, bounds.cpus, bounds.disk_bytes) == (
        1536 * MIB,
        300,
        0.5,
        2048 * MIB,
    )
    assert bounds.exit_file == str(tmp_path / "sandbox-exit.json")
    assert bounds.required is False


def test_defaults_come_from_the_machine(settings, tmp_path):
    for name in ("MEMORY_LIMIT_MB", "PIDS_LIMIT", "CPUS", "DISK_LIMIT_MB"):
        setattr(settings, f"DOCE_SERVER_{name}", "")
    bounds = sandbox_limits.plan_bounds(Layout(tmp_path))
    assert 768 * MIB <= bounds.memory_bytes <= 2048 * MIB
    assert bounds.pids == 512
    assert 1024 * MIB <= bounds.disk_bytes <= 10 * 1024 * MIB


def test_auto_runs_servers_anyway_and_says_what_is_missing(settings, monkeypatch):
    settings.DOCE_LIMITS = "auto"
    _machine(monkeypatch, ["memory: the cgroup v1 memory controller is absent"])
    sandbox_limits.require()  # no refusal
    assert sandbox_limits.warning() == (
        "OpenCode servers run without some of their bounds: memory: the cgroup v1 memory "
        "controller is absent."
    )


def test_required_refuses_with_one_line_not_retryable(settings, monkeypatch):
    settings.DOCE_LIMITS = "required"
    _machine(monkeypatch, ["processes: cgroup v1 /sys/fs/cgroup/pids: not writable by doce"])
    with pytest.raises(RuntimeFailure) as caught:
        sandbox_limits.require()
    assert caught.value.retryable is False
    assert "\n" not in caught.value.message
    assert caught.value.message.startswith(
        "the server's bounds cannot be enforced (DOCE_LIMITS=required): processes:"
    )


def test_required_refuses_unsandboxed_servers(settings):
    settings.DOCE_LIMITS = "required"
    with pytest.raises(RuntimeFailure, match="DOCE_SANDBOX=off"):
        sandbox_limits.require(sandboxed=False)


def test_a_machine_that_enforces_everything_has_nothing_to_say(settings, monkeypatch):
    settings.DOCE_LIMITS = "required"
    _machine(monkeypatch, [])
    sandbox_limits.require()
    assert sandbox_limits.warning() == ""


def test_the_reason_a_bound_stopped_a_server_is_read_back(tmp_path):
    layout = Layout(tmp_path)
    assert sandbox_limits.stop_reason(layout) == ""
    sandbox_bounds.exit_record_write(
        str(sandbox_limits.exit_file(layout)), bound="disk", message="its files reached it"
    )
    assert sandbox_limits.stop_reason(layout) == "its files reached it"
    sandbox_limits.stop_reason_clear(layout)
    assert sandbox_limits.stop_reason(layout) == ""
