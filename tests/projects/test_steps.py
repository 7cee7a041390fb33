"""The start-up steps on a runtime that misbehaves (the real ones run in
tests/integration/test_pipeline*.py)."""

import contextlib
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet

from doce.opencode.runtimes import RuntimeFailure, RuntimeState
from projects import services as project_services
from projects import steps
from projects.models import Project

pytestmark = pytest.mark.django_db


def step_job(project, **fields):
    """What a step reads of its job row (no row: the steps' writes to it do nothing)."""
    return SimpleNamespace(
        **{"subject": project, "pk": None, "attempts": 1, "params": {}, **fields}
    )


class ClashingRuntime:
    """The first server exits at once (another process took its port before it bound
    it); the next one comes up."""

    name = "local"

    def __init__(self):
        self.started: list[int] = []
        self.waited_on: list[int] = []
        self.specs = []

    def ensure_started(self, spec, state):
        self.specs.append(spec)
        if state is not None and self.is_alive(state):
            return state
        port = 40000 + len(self.started)
        self.started.append(port)
        return RuntimeState(
            runtime="local", data_dir=str(spec.data_dir), port=port, directory="/w", pid=port
        )

    def is_alive(self, state):
        return state.port != 40000  # the first port was taken: that server is gone

    def wait_listening(self, state, *, timeout):
        return None  # cannot tell: the health probe decides

    def wait_healthy(self, state, password, **kwargs):
        self.waited_on.append(state.port)
        return {"healthy": True}


@pytest.fixture
def runtime(monkeypatch):
    fake = ClashingRuntime()
    monkeypatch.setattr(project_services, "project_runtime", lambda project: fake)
    return fake


def test_a_server_that_lost_its_port_is_started_again_on_a_new_one(project, runtime):
    job = step_job(project)
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
    job = step_job(project)
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
    job = step_job(project)

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
    job = step_job(project, attempts=attempts)

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


class StartingRuntime(ClashingRuntime):
    """A live server that says it listens after ``listens_after`` polls (never: None);
    its health answers when ``answers``."""

    def __init__(self, listens_after, answers=True):
        super().__init__()
        self.listens_after = listens_after
        self.answers = answers
        self.polls: list[float] = []
        self.probes: list[float | None] = []

    def is_alive(self, state):
        return True

    def wait_listening(self, state, *, timeout):
        self.polls.append(timeout)
        return self.listens_after is not None and len(self.polls) > self.listens_after

    def wait_healthy(self, state, password, *, timeout=None):
        self.probes.append(timeout)
        if not self.answers:
            raise RuntimeFailure("OpenCode did not become healthy")
        return {"healthy": True}

    def log_tail(self, state, lines=40):
        return "booting"


@pytest.fixture
def starting(project, monkeypatch):
    Project.objects.filter(pk=project.pk).update(
        runtime_state=RuntimeState(
            runtime="local", data_dir="/d", port=40007, directory="/w", pid=7
        ).to_dict()
    )
    project.refresh_from_db()

    def use(runtime):
        monkeypatch.setattr(project_services, "project_runtime", lambda project: runtime)
        return runtime

    return use


@pytest.fixture
def other_work(monkeypatch):
    """Whether another job waits for a worker (queue_jobs.engine.work_waiting)."""
    waiting = {"now": True}
    monkeypatch.setattr(steps, "work_waiting", lambda besides: waiting["now"])
    return waiting


def test_a_server_not_listening_yet_hands_the_worker_back(project, starting, other_work):
    """A slice of waiting, then, since other work waits for a worker, StepWait (the job
    goes back to the queue, not counted as an attempt); the next slice of the same
    attempt keeps the first one's start, so the start timeout bounds the whole wait."""
    runtime = starting(StartingRuntime(listens_after=1))
    job = step_job(project)

    with pytest.raises(steps.StepWait, match="Waiting for the project's server"):
        steps.wait_healthy(job)
    began = job.params["health_wait"]["since"]
    assert runtime.polls == [steps.HEALTH_WAIT_SLICE] and runtime.probes == []

    steps.wait_healthy(job)  # it listens now: health is probed, once

    assert job.params["health_wait"]["since"] == began
    assert len(runtime.probes) == 1 and runtime.probes[0] > 50


def test_with_no_other_work_the_worker_goes_on_waiting(project, starting, other_work):
    """Nothing else needs the worker: no trip through the broker between slices."""
    other_work["now"] = False
    runtime = starting(StartingRuntime(listens_after=2))
    steps.wait_healthy(step_job(project))
    assert runtime.polls == [steps.HEALTH_WAIT_SLICE] * 3 and len(runtime.probes) == 1


def test_the_start_timeout_bounds_all_the_slices(project, starting, settings):
    runtime = starting(StartingRuntime(listens_after=None, answers=False))
    settings.DOCE_OPENCODE_START_TIMEOUT = 30
    job = step_job(project, params={"health_wait": {"attempt": 1, "since": 0.0}})

    with pytest.raises(steps.StepError, match="did not start listening within 30 s") as caught:
        steps.wait_healthy(job)

    assert caught.value.retryable  # a new attempt starts a new wait
    assert runtime.polls == [0]


def test_a_new_attempt_waits_afresh(project, starting):
    starting(StartingRuntime(listens_after=0))
    job = step_job(project, attempts=2, params={"health_wait": {"attempt": 1, "since": 0.0}})

    steps.wait_healthy(job)

    assert job.params["health_wait"]["attempt"] == 2
    assert job.params["health_wait"]["since"] > 0


def test_a_server_that_never_prints_the_line_is_found_by_its_health(project, starting, other_work):
    """Past the grace period each slice also probes health once: a server that answers
    without the "listening" line (another OpenCode version) is not waited out."""
    runtime = starting(StartingRuntime(listens_after=None, answers=False))
    job = step_job(project)
    with pytest.raises(steps.StepWait):
        steps.wait_healthy(job)
    assert runtime.probes == []  # within the grace period: no probe

    job.params["health_wait"]["since"] -= steps.LISTENING_LINE_GRACE
    with pytest.raises(steps.StepWait):
        steps.wait_healthy(job)  # past it: one short probe, no answer yet
    assert runtime.probes == [steps.HEALTH_PROBE_TIMEOUT]

    runtime.answers = True
    steps.wait_healthy(job)
    assert runtime.probes[1] == steps.HEALTH_PROBE_TIMEOUT and len(runtime.probes) == 3
