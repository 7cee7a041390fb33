"""A credential change and a prompt, in every order: the dispose never lands on a busy
session or a starting prompt, and the prompt after a change uses it (a fake OpenCode
client records the calls; the real round trip is in
tests/integration/test_key_edit_then_prompt.py)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from doce.opencode import OpenCodeTimeout, ServerError
from projects import credentials, instance
from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from queue_jobs.engine import StepError, StepWait
from queue_jobs.models import Job, JobState
from tests.factories import ProviderConnectionFactory

pytestmark = pytest.mark.django_db

SESSION = "ses_bakery"


class FakeOpenCode:
    """Sessions are busy while ``busy`` > 0 polls remain; a prompt makes its session
    busy for ``prompt_busy_polls`` polls, then it has a reply."""

    def __init__(self, *, busy: int = 0, prompt_busy_polls: int = 2):
        self.calls: list[str] = []
        self.keys: list[str] = []
        self.busy = busy
        self.prompt_busy_polls = prompt_busy_polls
        self.replies: list[dict] = []
        self.on_set_auth = None
        self.dispose_error: Exception | None = None

    def session_status(self):
        self.calls.append("status")
        if self.busy > 0:
            self.busy -= 1
            return {SESSION: {"type": "busy"}}
        return {}

    def set_auth(self, provider_id, credential):
        self.calls.append(f"put {provider_id}")
        self.keys.append(credential.to_json()["key"])
        if self.on_set_auth:
            self.on_set_auth()

    def remove_auth(self, provider_id):
        self.calls.append(f"delete {provider_id}")

    def dispose(self):
        self.calls.append("dispose")
        if self.dispose_error:
            raise self.dispose_error
        return True

    def prompt_async(self, session_id, text, *, model=None):
        self.calls.append(f"prompt {text}")
        self.busy = self.prompt_busy_polls

    def messages(self, session_id, *, limit=None):
        return self.replies[-(limit or len(self.replies)) :] if self.replies else []

    def close(self):
        pass


@pytest.fixture
def running(project, monkeypatch, settings, tmp_path):
    """Alice's running project whose server is a FakeOpenCode."""
    settings.DOCE_DATA_DIR = tmp_path
    ProviderConnectionFactory(
        user=project.owner,
        provider_id="stub",
        name="Stub",
        base_url="http://127.0.0.1:9/v1",
        models=["stub-model"],
        api_key="sk-stub-first-" + "1" * 20,
    )
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.RUNNING, bootstrap_session_id=SESSION
    )
    project.refresh_from_db()
    fake = FakeOpenCode()

    @contextlib.contextmanager
    def client(project, **options):
        yield fake

    monkeypatch.setattr(project_services, "project_client", client)
    monkeypatch.setattr(project_services, "write_opencode_config", lambda spec: None)
    monkeypatch.setattr(credentials, "write_opencode_config", lambda spec: None)
    monkeypatch.setattr(instance, "POLL_SECONDS", 0.001)
    return project, fake


def _edit_key(project, key: str) -> None:
    """What a key edit does before its job runs: the connection, then the mark."""
    from providers.models import ProviderConnection

    connection = ProviderConnection.objects.get(user=project.owner, provider_id="stub")
    connection.api_key = key
    connection.save()
    instance.rebuild_mark(project.pk)


def _pending(project) -> bool:
    return Project.objects.get(pk=project.pk).rebuild_pending


def test_a_prompt_right_after_a_key_edit_applies_it_first(running):
    project, fake = running
    _edit_key(project, "sk-stub-second-" + "2" * 20)

    project_services.message_send(project=project, text="hi")

    assert fake.calls[:4] == ["put stub", "status", "dispose", "prompt hi"]
    assert fake.keys == ["sk-stub-second-" + "2" * 20]
    assert not _pending(project)


def test_a_prompt_right_after_a_model_change_uses_the_new_providers_key(running):
    """The model change's re-injection job has not run yet: the prompt applies it first."""
    project, fake = running
    ProviderConnectionFactory(
        user=project.owner,
        provider_id="other",
        name="Other",
        base_url="http://127.0.0.1:9/v1",
        models=["m2"],
        api_key="sk-other-" + "3" * 20,
    )
    project_services.project_change_model(project=project, model="other/m2")
    assert Job.objects.get(subject=project).type == JobType.REINJECT_CREDENTIALS
    project.refresh_from_db()

    project_services.message_send(project=project, text="hi")

    assert fake.calls[:4] == ["put other", "status", "dispose", "prompt hi"]
    assert fake.keys == ["sk-other-" + "3" * 20]
    assert not _pending(project)


def test_without_a_change_a_prompt_goes_straight_out(running):
    project, fake = running
    project_services.message_send(project=project, text="hi")
    assert fake.calls[0] == "prompt hi" and "dispose" not in fake.calls


def test_the_prompt_keeps_the_server_until_it_started(running):
    project, fake = running
    fake.prompt_busy_polls = 0  # the 204 came back before the session turned busy...
    started = []

    def turn_busy_later(session_id, *, limit=None):
        if len(started) == 3:
            fake.busy = 5  # ...and it does, three polls later
        started.append(1)
        return []

    fake.messages = turn_busy_later
    project_services.message_send(project=project, text="hi")
    # It polled until the session showed busy, and stopped at the first busy poll.
    assert len(started) == 4 and fake.busy == 4


def test_a_fast_reply_counts_as_started(running):
    project, fake = running
    fake.prompt_busy_polls = 0
    fake.replies = [{"info": {"role": "assistant", "time": {"created": 10**13}}}]
    assert instance.prompt_send(fake, SESSION, "hi", model="stub/stub-model")


def test_an_old_reply_does_not_count_and_the_wait_ends(running, monkeypatch):
    project, fake = running
    fake.prompt_busy_polls = 0
    fake.replies = [{"info": {"role": "assistant", "time": {"created": 1}}}]
    started = instance.wait_prompt_started(fake, SESSION, sent_at=2.0, timeout=0.05)
    assert started is False


def test_a_busy_session_is_never_disposed_and_the_next_prompt_applies_the_change(running):
    project, fake = running
    fake.busy = 10**6  # an agent at work for a long while
    credentials.reinject(project=project, provider_id="stub")
    assert "dispose" not in fake.calls
    assert _pending(project)

    fake.busy = 0  # the agent finished
    fake.calls.clear()
    project_services.message_send(project=project, text="next")
    assert fake.calls[:4] == ["put stub", "status", "dispose", "prompt next"]
    assert not _pending(project)


def test_a_busy_session_puts_the_rebuild_off_to_a_job_that_waits_for_idle(running):
    project, fake = running
    fake.busy = 2
    credentials.reinject(project=project, provider_id="stub")
    waiting = Job.objects.get(subject=project, type=JobType.REBUILD_WHEN_IDLE)
    assert waiting.state == JobState.QUEUED

    with pytest.raises(StepWait):  # still busy: run again later, no attempt spent
        credentials.rebuild_when_idle(project=project)
    assert "dispose" not in fake.calls and _pending(project)

    credentials.rebuild_when_idle(project=project)  # idle now
    assert fake.calls[-2:] == ["status", "dispose"]
    assert not _pending(project)


def test_the_waiting_job_has_nothing_to_do_once_a_prompt_applied_the_change(running):
    project, fake = running
    fake.busy = 1
    credentials.reinject(project=project, provider_id="stub")
    project_services.message_send(project=project, text="next")  # idle by now: applies it
    fake.calls.clear()
    credentials.rebuild_when_idle(project=project)
    assert fake.calls == []


def test_a_prompt_while_the_agent_is_busy_is_sent_without_a_dispose(running):
    project, fake = running
    _edit_key(project, "sk-stub-third-" + "3" * 20)
    fake.busy = 10**6
    project_services.message_send(project=project, text="more")
    assert "dispose" not in fake.calls and "prompt more" in fake.calls
    assert _pending(project)  # applied at the first prompt on an idle session


def test_a_key_saved_while_one_is_being_applied_is_not_lost(running):
    project, fake = running
    _edit_key(project, "sk-stub-second-" + "2" * 20)
    # The next edit lands after the prompt read the credential, before its dispose.
    fake.on_set_auth = lambda: (
        setattr(fake, "on_set_auth", None) or _edit_key(project, "sk-stub-third-" + "3" * 20)
    )
    project_services.message_send(project=project, text="one")
    assert _pending(project)

    fake.busy = 0  # the first reply is done
    project_services.message_send(project=project, text="two")
    assert fake.keys[-1] == "sk-stub-third-" + "3" * 20
    assert not _pending(project)


def test_a_failed_dispose_leaves_the_change_for_the_next_prompt(running):
    project, fake = running
    fake.dispose_error = ServerError("boom", status_code=500)
    with pytest.raises(StepError):
        credentials.reinject(project=project, provider_id="stub")
    assert _pending(project)


def test_a_removed_key_is_taken_out_before_the_next_prompt(running):
    """Disconnected (or a team key no longer granted): the key leaves the server at the
    next rebuild, and no prompt goes out on the lost key: it is refused, saying why."""
    project, fake = running
    from providers.models import ProviderConnection

    ProviderConnection.objects.filter(user=project.owner, provider_id="stub").delete()
    instance.rebuild_mark(project.pk)
    with pytest.raises(project_services.ProjectNotRunning) as refused:
        project_services.message_send(project=project, text="hi")
    assert "You can no longer use stub" in str(refused.value)
    assert not any(call.startswith("prompt") for call in fake.calls)
    with instance.server_lock(project.pk), project_services.project_client(project) as client:
        instance.rebuild_if_pending(client, project=project)
    assert fake.calls[:3] == ["delete stub", "status", "dispose"]


def test_a_dispose_waits_for_a_prompt_that_holds_the_server(running, monkeypatch):
    project, fake = running
    holding = threading.Event()
    release = threading.Event()

    def hold():
        with instance.server_lock(project.pk):
            holding.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert holding.wait(10)
        monkeypatch.setattr(instance, "LOCK_TIMEOUT_SECONDS", 0.05)
        with pytest.raises(instance.ServerBusy), instance.server_lock(project.pk, timeout=0.05):
            pass
        with pytest.raises(StepError) as caught, credentials._server(project):
            pass
        assert caught.value.retryable
        assert "dispose" not in fake.calls
    finally:
        release.set()
        thread.join(10)
    with instance.server_lock(project.pk, timeout=1):
        pass  # free again once the holder let go


def test_a_project_busy_too_long_tells_the_user(running, monkeypatch):
    project, fake = running

    @contextlib.contextmanager
    def busy_lock(project_id, **kwargs):
        raise instance.ServerBusy("The project's server is busy with another change.")
        yield

    monkeypatch.setattr(instance, "server_lock", busy_lock)
    with pytest.raises(project_services.ProjectNotRunning, match="busy"):
        project_services.message_send(project=project, text="hi")


def test_a_status_poll_that_times_out_means_not_yet(running):
    project, fake = running
    answers = iter([OpenCodeTimeout("rebuilding"), {}, {SESSION: {"type": "busy"}}])

    def status():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fake.session_status = status
    assert instance.wait_prompt_started(fake, SESSION, sent_at=0, timeout=5)


def test_deleting_a_project_removes_its_lock_file(running, settings):
    project, fake = running
    project_services.message_send(project=project, text="hi")  # the prompt took the lock
    lock = Path(settings.DOCE_DATA_DIR) / "locks" / f"project-{project.pk}.lock"
    assert lock.exists()

    project_services.project_destroy(project=project)

    assert not lock.exists()
    assert not Project.objects.filter(pk=project.pk).exists()


def test_a_lock_file_still_held_is_not_removed(running, settings, monkeypatch):
    """Deleting the file under a holder would let the next process lock a new file while
    the holder still works: a holder that does not let go in time keeps it."""
    project, fake = running
    monkeypatch.setattr(instance, "LOCK_TIMEOUT_SECONDS", 0.05)
    lock = Path(settings.DOCE_DATA_DIR) / "locks" / f"project-{project.pk}.lock"
    with instance.server_lock(project.pk):
        instance.server_lock_remove(project.pk)
        assert lock.exists()
    instance.server_lock_remove(project.pk)
    assert not lock.exists()
