"""A new server never takes a port another server is recorded with while that one may
still run: a preview link to a server that died, unnoticed yet, must never reach the
next project's dev server on the same port."""

from __future__ import annotations

import pytest

from projects import steps
from projects.models import PooledServer, Project
from projects.services import reserved_ports
from tests.projects.test_steps import runtime, step_job  # noqa: F401 (runtime: a fixture)

pytestmark = pytest.mark.django_db


def _state(port: int, preview_port: int | None) -> dict:
    return {
        "runtime": "local",
        "data_dir": "/d",
        "port": port,
        "directory": "/w",
        "preview_port": preview_port,
    }


def _recorded(owner, status, runtime_state) -> Project:
    return Project.objects.create(
        owner=owner,
        name=f"A {status} project",
        prompt="p",
        server_password="pw-" + "x" * 30,
        status=status,
        runtime_state=runtime_state,
    )


def test_ports_of_servers_that_may_run_are_reserved(alice):
    _recorded(alice, Project.Status.RUNNING, _state(21000, 21001))
    _recorded(alice, Project.Status.STOPPED, _state(21002, 21003))  # free again
    _recorded(alice, Project.Status.STARTING, _state(21004, None))
    PooledServer.objects.create(
        key="k1",
        runtime="local",
        runtime_state=_state(21005, 21006),
        data_dir="/p",
        server_password="pw",
    )
    # A state doce never wrote: ignored, not an error.
    _recorded(alice, Project.Status.RUNNING, {"port": "21007", "preview_port": [1]})
    assert reserved_ports() == {21000, 21001, 21004, 21005, 21006}


def test_a_start_is_given_the_ports_other_servers_hold(project, runtime, bob):  # noqa: F811
    _recorded(bob, Project.Status.RUNNING, _state(21000, 21001))
    steps.runtime_up(step_job(project))
    assert runtime.specs[-1].reserved_ports == {21000, 21001}
