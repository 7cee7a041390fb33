"""projects.tokens: the holder's refreshed tokens are read back and followed; a follower
about to refresh becomes the holder (unit tests: auth.json files on disk, a fake client;
the real thing is tests/integration/test_oauth_refresh.py)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from doce.opencode.runtimes import Layout
from projects import credentials, instance, tokens
from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from providers import services
from providers.models import ProviderConnection
from providers.services import FOLLOWER_REFRESH, credential_for
from queue_jobs.engine import StepError
from queue_jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(alice):
    return services.connection_create(
        user=alice,
        provider_id="openai",
        auth_type="oauth",
        oauth_access_token="access-1-0123456789",
        oauth_refresh_token="refresh-1-0123456789",
        oauth_expires_at=timezone.now() + timedelta(seconds=30),
    )


def make(owner, name, tmp_path, status=Project.Status.RUNNING, provider="openai") -> Project:
    return Project.objects.create(
        owner=owner,
        name=name,
        prompt="p",
        current_model_provider_id=provider,
        current_model_id="gpt-5",
        status=status,
        runtime="local",
        data_dir=str(tmp_path / name),
        runtime_state={
            "runtime": "local",
            "data_dir": str(tmp_path / name),
            "port": 9,
            "directory": str(tmp_path / name / "workspace"),
        },
        server_password="pw-" + "x" * 30,
    )


def write_auth(project: Project, access: str, refresh: str, expires_in: float = 3600) -> None:
    path = Layout(Path(project.data_dir)).auth_file
    path.parent.mkdir(parents=True, exist_ok=True)
    expires = int((timezone.now().timestamp() + expires_in) * 1000)
    entry = {"type": "oauth", "access": access, "refresh": refresh, "expires": expires}
    path.write_text(json.dumps({"openai": entry}))


def stored(connection) -> tuple[str, str]:
    connection.refresh_from_db()
    return str(connection.oauth_access_token), str(connection.oauth_refresh_token)


def test_the_holders_refresh_is_written_back_and_followed(
    alice, bob, signed_in, tmp_path, django_capture_on_commit_callbacks
):
    holder = make(alice, "holder", tmp_path)
    follower = make(alice, "follower", tmp_path)
    make(alice, "stopped", tmp_path, status=Project.Status.STOPPED)
    make(alice, "elsewhere", tmp_path, provider="anthropic")
    make(bob, "bobs", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=holder.pk)
    write_auth(follower, "access-1-0123456789", FOLLOWER_REFRESH)  # ignored: not the holder

    assert tokens.oauth_tokens_watch() == 0  # the holder has no auth.json yet: nothing
    write_auth(holder, "access-2-0123456789", "refresh-2-0123456789")
    with django_capture_on_commit_callbacks(execute=True):
        assert tokens.oauth_tokens_watch() == 1
    assert stored(signed_in) == ("access-2-0123456789", "refresh-2-0123456789")
    jobs = Job.objects.filter(type=JobType.FOLLOW_OAUTH_TOKENS)
    assert [job.subject.name for job in jobs] == ["follower"]
    assert jobs.get().params == {"provider_id": "openai"}
    with django_capture_on_commit_callbacks(execute=True):
        assert tokens.oauth_tokens_watch() == 0  # the same tokens again: nothing new


def test_a_holder_that_stopped_is_read_back_once_more_and_lets_go(
    alice, signed_in, tmp_path, django_capture_on_commit_callbacks
):
    holder = make(alice, "holder", tmp_path, status=Project.Status.STOPPED)
    credential_for(user=alice, provider_id="openai", holder=holder.pk)
    write_auth(holder, "access-2-0123456789", "refresh-2-0123456789")
    with django_capture_on_commit_callbacks(execute=True):
        tokens.oauth_tokens_watch()
    assert stored(signed_in) == ("access-2-0123456789", "refresh-2-0123456789")
    assert ProviderConnection.objects.get(pk=signed_in.pk).oauth_token_holder is None


class FakeClient:
    def __init__(self, calls, project, on_put=None, busy=()):
        self.calls, self.project, self.on_put, self.busy = calls, project, on_put, busy

    def session_status(self):
        return {"ses_x": {"type": "busy"}} if self.project.name in self.busy else {}

    def set_auth(self, provider_id, credential):
        self.calls.append((self.project.name, provider_id, credential.refresh))
        if self.on_put:
            self.on_put(self.project)


@pytest.fixture
def clients(monkeypatch):
    calls: list[tuple[str, str, str]] = []
    hooks: dict = {}

    @contextmanager
    def fake(project):
        yield FakeClient(calls, project, hooks.get("on_put"), hooks.get("busy", ()))

    monkeypatch.setattr(tokens, "_client", fake)
    return calls, hooks


def test_a_follower_about_to_refresh_takes_over_the_refresh_token(
    alice, signed_in, tmp_path, clients, settings, django_capture_on_commit_callbacks
):
    calls, hooks = clients
    settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS = 60  # the token expires in 30 s: due
    old = make(alice, "old", tmp_path)
    new = make(alice, "new", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=old.pk)
    # The old holder refreshed a moment ago, and again while it was being demoted.
    write_auth(old, "access-2-0123456789", "refresh-2-0123456789")
    hooks["on_put"] = lambda project: (
        project.name == "old" and write_auth(old, "access-3-0123456789", "refresh-3-0123456789")
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert tokens.oauth_lease(project=new)
    assert calls == [
        ("old", "openai", FOLLOWER_REFRESH),
        ("new", "openai", "refresh-3-0123456789"),  # the newest: nothing is spent twice
    ]
    assert ProviderConnection.objects.get(pk=signed_in.pk).oauth_token_holder == new.pk
    assert stored(signed_in) == ("access-3-0123456789", "refresh-3-0123456789")

    calls.clear()
    assert tokens.oauth_lease(project=new)  # already the holder: nothing to do
    assert calls == []


def test_no_lease_while_the_token_is_fresh_or_the_connection_expired(
    alice, signed_in, tmp_path, clients, settings
):
    calls, _ = clients
    settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS = 5  # the token expires in 30 s: not due
    old = make(alice, "old", tmp_path)
    new = make(alice, "new", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=old.pk)
    assert not tokens.oauth_lease(project=new)
    settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS = 60
    services.connection_mark_expired(connection=signed_in, message="invalid_grant")
    assert not tokens.oauth_lease(project=new)
    assert calls == []


def test_an_auth_json_the_agent_replaced_with_a_link_is_not_read(
    alice, signed_in, tmp_path, django_capture_on_commit_callbacks
):
    holder = make(alice, "holder", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=holder.pk)
    outside = make(alice, "outside", tmp_path, status=Project.Status.STOPPED)
    write_auth(outside, "access-9-0123456789", "refresh-9-0123456789")
    path = Layout(Path(holder.data_dir)).auth_file
    path.parent.mkdir(parents=True)
    path.symlink_to(Layout(Path(outside.data_dir)).auth_file)
    with django_capture_on_commit_callbacks(execute=True):
        assert tokens.oauth_tokens_watch() == 0
    assert stored(signed_in) == ("access-1-0123456789", "refresh-1-0123456789")


def test_a_holder_starting_a_prompt_is_left_to_refresh_and_followed(
    alice, signed_in, tmp_path, clients, settings, django_capture_on_commit_callbacks
):
    """Two prompts at once: the second does not take the place from under the first
    one's refresh (the first holds its server lock while its prompt starts); it waits
    for the new tokens and gets them as a follower."""
    calls, hooks = clients
    settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS = 60
    first = make(alice, "first", tmp_path)
    second = make(alice, "second", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=first.pk)
    polls = []

    def refresh_later(*args):
        polls.append(1)
        if len(polls) == 3:  # the holder's refresh lands while the second one waits
            write_auth(first, "access-2-0123456789", "refresh-2-0123456789")
        return real_sleep(0)

    real_sleep = tokens.time.sleep
    with pytest.MonkeyPatch.context() as patch, instance.server_lock(first.pk):
        patch.setattr(tokens.time, "sleep", refresh_later)
        with django_capture_on_commit_callbacks(execute=True):
            assert not tokens.oauth_lease(project=second)
    assert len(polls) == 3
    assert calls == [("second", "openai", FOLLOWER_REFRESH)]
    connection = ProviderConnection.objects.get(pk=signed_in.pk)
    assert connection.oauth_token_holder == first.pk
    assert stored(signed_in) == ("access-2-0123456789", "refresh-2-0123456789")


def test_an_idle_holder_that_just_took_the_place_is_taken_over_at_once(
    alice, signed_in, tmp_path, clients, settings
):
    """A holder that took the place for a prompt that needed no refresh (its token was
    due, not yet expired) and went idle refreshes nothing: a follower prompted after
    the expiry must not wait for it (it used to wait, then prompt with a follower's
    refresh token, which the provider refused)."""
    calls, _ = clients
    settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS = 60
    first = make(alice, "first", tmp_path)
    second = make(alice, "second", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=first.pk)
    assert tokens.oauth_lease(project=second)
    assert calls == [
        ("first", "openai", FOLLOWER_REFRESH),
        ("second", "openai", "refresh-1-0123456789"),
    ]
    assert ProviderConnection.objects.get(pk=signed_in.pk).oauth_token_holder == second.pk


def test_a_busy_holder_that_never_refreshes_is_taken_over_after_the_wait(
    alice, signed_in, tmp_path, clients, settings, monkeypatch
):
    """A holder running a long tool makes no request, so no refresh comes: after
    FOLLOW_WAIT_SECONDS the waiting prompt takes the place anyway."""
    calls, hooks = clients
    hooks["busy"] = ("first",)
    settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS = 60
    first = make(alice, "first", tmp_path)
    second = make(alice, "second", tmp_path)
    credential_for(user=alice, provider_id="openai", holder=first.pk)
    clock = [0.0]

    def tick(seconds):
        clock[0] += seconds

    monkeypatch.setattr(tokens.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(tokens.time, "sleep", tick)
    assert tokens.oauth_lease(project=second)
    assert clock[0] >= tokens.FOLLOW_WAIT_SECONDS
    assert calls == [
        ("first", "openai", FOLLOWER_REFRESH),
        ("second", "openai", "refresh-1-0123456789"),
    ]


def test_an_expired_sign_in_fails_the_pipeline_with_sign_in_again(
    alice, signed_in, tmp_path, monkeypatch
):
    """Not injected: the step fails the way a missing or rejected key does."""

    @contextmanager
    def no_server(project, **options):
        yield object()  # never reached: nothing is put

    monkeypatch.setattr(project_services, "project_client", no_server)
    project = make(alice, "site", tmp_path, status=Project.Status.STARTING)
    services.connection_mark_expired(connection=signed_in, message="invalid_grant")
    with pytest.raises(StepError) as error:
        credentials.inject(project=project, dispose=False)
    assert error.value.kind == Project.ErrorKind.PROVIDER_AUTH and not error.value.retryable
    assert str(error.value) == (
        "Provider not configured or key rejected: "
        "The openai sign-in has expired: sign in again in Settings."
    )
