"""The start-up steps on a runtime that misbehaves (the real ones run in
tests/integration/test_pipeline*.py)."""

import contextlib

import pytest
from cryptography.fernet import Fernet

from doce.opencode.runtimes import RuntimeState
from projects import services as project_services
from projects import steps
from projects.models import Project

pytestmark = pytest.mark.django_db


class ClashingRuntime:
    """The first server exits at once (another process took its port before it bound
    it); the next one comes up."""

    name = "local"

    def __init__(self):
        self.started: list[int] = []
        self.waited_on: list[int] = []

    def ensure_started(self, spec, state):
        if state is not None and self.is_alive(state):
            return state
        port = 40000 + len(self.started)
        self.started.append(port)
        return RuntimeState(
            runtime="local", data_dir=str(spec.data_dir), port=port, directory="/w", pid=port
        )

    def is_alive(self, state):
        return state.port != 40000  # the first port was taken: that server is gone

    def wait_healthy(self, state, password, **kwargs):
        self.waited_on.append(state.port)
        return {"healthy": True}


@pytest.fixture
def runtime(monkeypatch):
    fake = ClashingRuntime()
    monkeypatch.setattr(project_services, "project_runtime", lambda project: fake)
    return fake


def test_a_server_that_lost_its_port_is_started_again_on_a_new_one(project, runtime):
    job = type("Job", (), {"subject": project})
    steps.runtime_up(job)
    project.refresh_from_db()
    assert project.runtime_state["port"] == 40000

    steps.wait_healthy(job)

    project.refresh_from_db()
    assert runtime.started == [40000, 40001]
    assert runtime.waited_on == [40001]  # not 21 s of probes at a dead port
    assert project.runtime_state["port"] == 40001
    assert project.status == Project.Status.STARTING


def test_a_live_server_is_only_waited_for(project, runtime):
    job = type("Job", (), {"subject": project})
    Project.objects.filter(pk=project.pk).update(
        runtime_state=RuntimeState(
            runtime="local", data_dir="/d", port=40005, directory="/w", pid=5
        ).to_dict()
    )
    project.refresh_from_db()
    steps.wait_healthy(job)
    assert runtime.started == [] and runtime.waited_on == [40005]


class RecordingRuntime(ClashingRuntime):
    def __init__(self):
        super().__init__()
        self.stopped: list[int] = []
        self.passwords: list[str] = []

    def ensure_started(self, spec, state):
        self.passwords.append(spec.password)
        return super().ensure_started(spec, state)

    def is_alive(self, state):
        return state.active

    def stop(self, state):
        self.stopped.append(state.port)
        return RuntimeState(
            runtime="local",
            data_dir=state.data_dir,
            port=state.port,
            directory="/w",
            active=False,
        )


def test_a_password_made_with_a_wrong_key_is_renewed_with_a_new_server(
    project, monkeypatch, settings
):
    """A project created while DOCE_ENCRYPTION_KEYS was wrong: once the right key is back
    its password opens no more, and its old server could never be reached. Start gives
    it a new password and a new server, not five failed health checks."""
    runtime = RecordingRuntime()
    monkeypatch.setattr(project_services, "project_runtime", lambda project: runtime)
    Project.objects.filter(pk=project.pk).update(
        runtime_state=RuntimeState(
            runtime="local", data_dir="/d", port=40009, directory="/w", pid=9
        ).to_dict()
    )
    right = list(settings.DOCE_ENCRYPTION_KEYS)
    settings.DOCE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the wrong key
    Project.objects.filter(pk=project.pk).update(server_password="made-with-the-wrong-key")
    settings.DOCE_ENCRYPTION_KEYS = right  # put right: that value opens no more
    project.refresh_from_db()
    job = type("Job", (), {"subject": project})

    steps.runtime_up(job)

    project.refresh_from_db()
    assert runtime.stopped == [40009]
    assert runtime.passwords == [str(project.server_password)]
    assert len(str(project.server_password)) >= 32
    assert project.runtime_state["port"] == 40000


class SessionClient:
    """What the session and prompt steps ask of a server that already has the project's
    session and prompt (an earlier attempt made them before its worker died)."""

    def __init__(self):
        self.calls: list[str] = []

    def session_list(self):
        self.calls.append("list")
        return [{"id": "ses_earlier", "title": "doce project 0"}]

    def session_create(self, *, title):
        self.calls.append("create")
        return {"id": "ses_new", "title": title}

    def messages(self, session_id):
        self.calls.append("messages")
        return [{"info": {"role": "user"}}]

    def prompt_async(self, session_id, text, *, model):
        self.calls.append("prompt")


@pytest.fixture
def session_client(project, monkeypatch):
    client = SessionClient()
    monkeypatch.setattr(project_services, "session_title", lambda project: "doce project 0")
    monkeypatch.setattr(
        project_services, "project_client", lambda project: contextlib.nullcontext(client)
    )
    monkeypatch.setattr(steps.tokens, "oauth_lease", lambda project: None)
    return client


@pytest.mark.parametrize("attempts", [1, 2])
def test_only_a_later_attempt_looks_for_what_an_earlier_one_made(project, session_client, attempts):
    """Each claim of a job counts an attempt, so the first one cannot find a session or
    a prompt of its own: it skips the two look-ups (one round trip each). A later one
    finds them and makes neither again."""
    job = type("Job", (), {"subject": project, "attempts": attempts})

    steps.session_create(job)
    project.refresh_from_db()
    job.subject = project
    steps.send_initial_prompt(job)

    project.refresh_from_db()
    assert project.initial_prompt_sent
    if attempts == 1:
        assert session_client.calls == ["create", "prompt"]
        assert project.bootstrap_session_id == "ses_new"
    else:
        assert session_client.calls == ["list", "messages"]
        assert project.bootstrap_session_id == "ses_earlier"
