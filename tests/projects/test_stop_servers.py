"""`manage.py stop_servers` (what `make run`'s Ctrl-C ends with): every project whose
server runs is stopped and says so; nothing else is touched."""

from dataclasses import replace
from io import StringIO

import pytest
from django.core.management import call_command

from doce.opencode.runtimes import RuntimeFailure, RuntimeState
from projects import services as project_services
from projects.models import Project

pytestmark = pytest.mark.django_db


class FakeRuntime:
    name = "local"

    def __init__(self):
        self.stopped: list[int] = []

    def stop(self, state: RuntimeState) -> RuntimeState:
        if state.pid == 666:
            raise RuntimeFailure("processes [666] survived SIGKILL")
        self.stopped.append(state.pid)
        return replace(state, active=False, pid=None)


def _project(owner, pid, *, status, active=True) -> Project:
    state = RuntimeState(
        runtime="local",
        data_dir="/nonexistent",
        port=4000 + pid,
        directory="/w",
        pid=pid,
        active=active,
    )
    return Project.objects.create(
        owner=owner,
        name=f"p{pid}",
        prompt="p",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password="pw-" + "x" * 30,
        status=status,
        runtime="local",
        runtime_state=state.to_dict(),
    )


def test_every_running_server_is_stopped_and_its_project_says_so(alice, bob, monkeypatch):
    runtime = FakeRuntime()
    monkeypatch.setattr(project_services, "project_runtime", lambda project: runtime)
    running = _project(alice, 1, status=Project.Status.RUNNING)
    failed = _project(bob, 2, status=Project.Status.ERROR)  # a failed start left it up
    stopped_before = _project(alice, 3, status=Project.Status.STOPPED, active=False)
    stubborn = _project(bob, 666, status=Project.Status.RUNNING)
    never = Project.objects.create(
        owner=alice,
        name="new",
        prompt="p",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password="pw-" + "y" * 30,
    )
    out, err = StringIO(), StringIO()
    call_command("stop_servers", stdout=out, stderr=err)

    assert sorted(runtime.stopped) == [1, 2]
    assert "Stopped 2 project server(s)." in out.getvalue()
    assert f"Project {stubborn.pk}: not stopped" in err.getvalue()
    for project in (running, failed):
        project.refresh_from_db()
        assert project.status == Project.Status.STOPPED
        assert project.runtime_state["active"] is False
    stopped_before.refresh_from_db()
    never.refresh_from_db()
    assert stopped_before.status == Project.Status.STOPPED and never.runtime_state == {}
