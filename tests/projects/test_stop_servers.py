"""`manage.py stop_servers` (what `make run`'s Ctrl-C ends with): every project whose
server runs is stopped and says so; nothing else is touched."""

from dataclasses import replace
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from doce import capacity
from doce.opencode.runtimes import LocalRuntime, RuntimeFailure, RuntimeState
from projects import services as project_services
from projects.models import Project
from providers.catalog.fetch import CATALOG_SERVERS
from providers.models import OAuthFlow

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


def test_sign_ins_and_catalog_servers_left_by_a_worker_are_stopped_too(
    alice, monkeypatch, settings, tmp_path
):
    """A worker stopped during a catalog read or a sign-in leaves that server running
    (its `finally` never ran): Ctrl-C ends the sign-in and stops both servers."""
    settings.DOCE_DATA_DIR = str(tmp_path)
    removed: list[int] = []
    monkeypatch.setattr(LocalRuntime, "remove", lambda self, state: removed.append(state.port))
    monkeypatch.setattr(project_services, "project_runtime", lambda project: FakeRuntime())

    def state(port: int) -> RuntimeState:
        return RuntimeState(
            runtime="local", data_dir=str(tmp_path / str(port)), port=port, directory=""
        )

    capacity.slot_take(kind=CATALOG_SERVERS, key="c1")
    capacity.slot_attach(kind=CATALOG_SERVERS, key="c1", state=state(5101))
    flow = OAuthFlow.objects.create(
        user=alice,
        provider_id="github-copilot",
        method=0,
        state=OAuthFlow.State.PENDING,
        runtime_state=state(5102).to_dict(),
        data_dir=str(tmp_path / "flow"),
        expires_at=timezone.now() + timedelta(minutes=10),
    )
    out = StringIO()
    call_command("stop_servers", stdout=out, stderr=StringIO())

    assert sorted(removed) == [5101, 5102]
    assert "Ended 1 sign-in(s) still going." in out.getvalue()
    assert "Stopped 1 catalog server(s)." in out.getvalue()
    flow.refresh_from_db()
    assert flow.state == OAuthFlow.State.FAILED and "start the sign-in again" in flow.error_message
    assert capacity.slots_with_servers(CATALOG_SERVERS) == []
