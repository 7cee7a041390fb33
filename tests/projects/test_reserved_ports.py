"""A new server never takes a port another server is recorded with while that one may
still run: a preview link to a server that died, unnoticed yet, must never reach the
next project's dev server on the same port."""

from __future__ import annotations

import pytest

from projects.models import PooledServer, Project
from projects.services import reserved_ports

pytestmark = pytest.mark.django_db


def _state(port: int, preview_port: int | None) -> dict:
    return {
        "runtime": "local",
        "data_dir": "/d",
        "port": port,
        "directory": "/w",
        "preview_port": preview_port,
    }


def test_ports_of_servers_that_may_run_are_reserved(project, alice):
    project.status = Project.Status.RUNNING
    project.runtime_state = _state(21000, 21001)
    project.save()
    Project.objects.create(  # stopped: its ports are free again
        owner=alice,
        name="Old",
        prompt="p",
        server_password="pw-" + "y" * 30,
        status=Project.Status.STOPPED,
        runtime_state=_state(21002, 21003),
    )
    Project.objects.create(
        owner=alice,
        name="Starting",
        prompt="p",
        server_password="pw-" + "z" * 30,
        status=Project.Status.STARTING,
        runtime_state=_state(21004, None),
    )
    PooledServer.objects.create(
        key="k1",
        runtime="local",
        runtime_state=_state(21005, 21006),
        data_dir="/p",
        server_password="pw",
    )
    Project.objects.create(  # a row with a state doce never wrote: ignored, not an error
        owner=alice,
        name="Odd",
        prompt="p",
        server_password="pw-" + "w" * 30,
        status=Project.Status.RUNNING,
        runtime_state={"port": "21007", "preview_port": [1]},
    )
    assert reserved_ports() == {21000, 21001, 21004, 21005, 21006}
