"""Every locally started server gets a second port, for the site's dev server: ``PORT``
in its environment, forwarded inward by pasta from the host's loopback only, recorded in
its RuntimeState, and explained to the agent in the instructions opencode.json names.
The real sandbox is exercised by tests/integration/test_preview_dev_server.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doce.opencode.runtimes import sandbox
from doce.opencode.runtimes.base import RuntimeFailure, RuntimeState, ServerSpec, free_port
from doce.opencode.runtimes.config import (
    HOME_FILE_FOLDERS,
    INSTRUCTIONS_FILE,
    write_opencode_config,
)


def _plan(**overrides) -> sandbox.Plan:
    values = {
        "workspace": "/w",
        "home": "/h",
        "port": 21000,
        "etc_dir": "/e",
        "tools": {"bwrap": "bwrap", "pasta": "pasta", "nsenter": "nsenter", "ip": "ip"},
    }
    return sandbox.Plan(**{**values, **overrides})


def test_pasta_forwards_the_preview_port_inward_from_loopback_only():
    line = " ".join(sandbox.pasta_args(_plan(preview_port=21001), 7, as_root=False))
    assert "--tcp-ports 127.0.0.1/21000" in line
    assert "--tcp-ports 127.0.0.1/21001" in line
    assert "--tcp-ns none" in line  # nothing more outward
    without = " ".join(sandbox.pasta_args(_plan(), 7, as_root=False))
    assert without.count("--tcp-ports") == 1


def test_a_plan_written_before_the_preview_port_still_reads():
    old = json.loads(_plan().to_json())
    del old["preview_port"]
    assert sandbox.Plan.from_json(json.dumps(old)).preview_port is None


def test_the_state_records_it_and_older_states_read_without_it():
    state = RuntimeState(runtime="local", data_dir="/d", port=21000, directory="/w")
    assert state.preview_port is None
    data = {**state.to_dict(), "preview_port": 21001}
    assert RuntimeState.from_dict(data).preview_port == 21001


def test_the_preview_port_is_another_port_of_the_server_range(settings):
    settings.DOCE_SERVER_PORT_RANGE = "21000-21001"
    settings.DOCE_SERVER_PORTS = range(21000, 21002)
    for _ in range(20):
        assert free_port(avoid={21000}) == 21001


def test_reserved_ports_are_never_given(settings):
    """Ports other servers are recorded with (ServerSpec.reserved_ports) stay theirs."""
    settings.DOCE_SERVER_PORT_RANGE = "21000-21002"
    settings.DOCE_SERVER_PORTS = range(21000, 21003)
    for _ in range(20):
        assert free_port(avoid=frozenset({21000, 21002})) == 21001
    with pytest.raises(RuntimeFailure, match="no free port"):
        free_port(avoid=frozenset(range(21000, 21003)))


def test_the_agent_is_told_about_port_in_its_instructions(tmp_path):
    spec = ServerSpec(name="p1", data_dir=tmp_path, model="stub/stub-model", password="pw")
    spec.layout.prepare()
    config = json.loads(
        write_opencode_config(spec, operator={"instructions": ["RULES.md"]}).read_text()
    )
    assert config["instructions"] == ["RULES.md", "~/" + INSTRUCTIONS_FILE]
    text = (spec.layout.home / INSTRUCTIONS_FILE).read_text()
    assert "`PORT` environment variable" in text and '--port "$PORT"' in text
    # The docker runtime mounts the folder (its home is a volume).
    assert str(Path(INSTRUCTIONS_FILE).parent) in HOME_FILE_FOLDERS


def test_a_link_the_agent_left_in_its_home_is_not_followed(tmp_path):
    spec = ServerSpec(name="p1", data_dir=tmp_path / "d", model="stub/stub-model", password="pw")
    spec.layout.prepare()
    outside = tmp_path / "outside.md"
    outside.write_text("mine")
    target = spec.layout.home / INSTRUCTIONS_FILE
    target.parent.mkdir(parents=True)
    target.symlink_to(outside)
    write_opencode_config(spec, operator={})
    assert outside.read_text() == "mine"
    assert not target.is_symlink() and "PORT" in target.read_text()
