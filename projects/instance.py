"""A project's OpenCode instance, kept in step with the user's credentials without ever
disposing it under a prompt.

A running instance caches its providers, so a changed credential needs ``POST
/instance/dispose`` before the next prompt sees it; but a dispose aborts a prompt that is
starting or running (``MessageAbortedError``): the prompt is lost. Hence three rules:

- Every dispose and every prompt doce sends hold the project's server lock: an exclusive
  ``flock`` on a file under ``DOCE_DATA_DIR/locks``. The web process (prompts) and the
  workers (credential jobs) run on the host of the servers they talk to, so they share
  it; the kernel drops the lock of a holder that dies.
- A prompt keeps the lock until OpenCode shows that it started (its session busy, or
  already answered): ``prompt_async`` answers 204 before the prompt starts, and a dispose
  in that gap is what lost prompts.
- A dispose happens only while no session is busy (``GET /session/status``). Otherwise the
  project keeps ``rebuild_pending`` and the next prompt applies the change first (the
  current credential again, then the dispose); the credential job also waits a little
  for the sessions to go idle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

from django.utils import timezone

from doce.locks import file_lock, lock_path
from doce.opencode import ModelRef, NotFound, OpenCodeClient, OpenCodeError
from doce.opencode.runtimes import RuntimeFailure
from projects.models import Project
from projects.organisations import OrganisationUnavailable, organisation_put
from providers.services import (
    CredentialUnavailable,
    credential_for,
    credential_mark_injected,
)

logger = logging.getLogger(__name__)

#: How long a prompt or a credential job waits for another one to let go of a project.
LOCK_TIMEOUT_SECONDS = 30.0
#: How long a prompt keeps the lock waiting for OpenCode to show it started.
PROMPT_START_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.02

#: Reasons a credential is gone for good: the server must not keep the old one.
GONE = ("missing", "revoked")


class ServerBusy(Exception):
    """Another prompt or credential change held the project's server for too long."""


def _lock_name(project_id: int) -> str:
    return f"project-{int(project_id)}"


def _busy() -> ServerBusy:
    return ServerBusy("The project's server is busy with another change: try again in a moment.")


@contextmanager
def server_lock(project_id: int, *, timeout: float | None = None) -> Iterator[None]:
    """Hold the project's server: no dispose and no prompt of another process meanwhile."""
    timeout = LOCK_TIMEOUT_SECONDS if timeout is None else timeout
    with file_lock(_lock_name(project_id), timeout=timeout, poll=POLL_SECONDS, busy=_busy):
        yield


def server_lock_remove(project_id: int) -> None:
    """The project's server is gone for good (a deleted project): delete its lock file.
    It is taken first, so a prompt or a dispose that still holds it ends before; a
    holder that does not let go in time keeps the file (a leftover is harmless)."""
    path = lock_path(_lock_name(project_id))
    if not path.exists():
        return
    try:
        with server_lock(project_id):
            path.unlink(missing_ok=True)
    except ServerBusy:
        logger.warning("project %s: its lock file is left, still held", project_id)


def busy_sessions(client: OpenCodeClient) -> list[str]:
    """The sessions OpenCode is working on (busy, or retrying a provider call)."""
    return [
        session_id
        for session_id, status in client.session_status().items()
        if (status or {}).get("type", "idle") != "idle"
    ]


def credential_put(client: OpenCodeClient, *, project: Project, provider_id: str) -> None:
    """``PUT /auth`` the user's current credential for ``provider_id`` (nothing for a
    keyless endpoint). An organisation's provider gets its ``wellknown`` entry instead
    (``projects.organisations``). Raises ``CredentialUnavailable``,
    ``OrganisationUnavailable`` and ``OpenCodeError``."""
    if organisation_put(client, project=project, provider_id=provider_id):
        credentials_marked_set(project)
        return
    try:
        # holder: an OAuth refresh token goes to one project only (projects.tokens).
        credential = credential_for(
            user=project.owner_id, provider_id=provider_id, holder=project.pk
        )
    except CredentialUnavailable as exc:
        if exc.reason != CredentialUnavailable.KEYLESS_ENDPOINT:
            raise
        credential = None  # a local endpoint without a key needs no credential
    if credential is not None:
        client.set_auth(provider_id, credential.credential)
    credentials_marked_set(project)
    if credential is not None:
        credential_mark_injected(credential=credential, project_id=project.pk)


def credentials_marked_set(project: Project) -> None:
    Project.objects.filter(pk=project.pk).update(
        provider_credentials_set=True, updated_at=timezone.now()
    )
    # A fresh credential answers an earlier "key rejected": let the next reply judge it.
    Project.objects.filter(pk=project.pk, error_kind=Project.ErrorKind.PROVIDER_AUTH).exclude(
        status=Project.Status.ERROR
    ).update(error_kind="", error_message="")


def rebuild_mark(project_id: int) -> None:
    """A change reached (or is about to reach) the server: rebuild before the next prompt."""
    Project.objects.filter(pk=project_id).update(rebuild_pending=True)


def rebuild_claim(project_id: int) -> bool:
    """With the lock held, before reading what to apply: take the mark (say whether there
    was one). A change saved after this marks the project again, so it is never lost."""
    return bool(
        Project.objects.filter(pk=project_id, rebuild_pending=True).update(rebuild_pending=False)
    )


def rebuild_pending(project_id: int) -> bool:
    return Project.objects.filter(pk=project_id, rebuild_pending=True).exists()


@contextmanager
def marked_on_failure(project_id: int) -> Iterator[None]:
    """Applying a change failed half-way: the next prompt tries again."""
    try:
        yield
    except BaseException:
        rebuild_mark(project_id)
        raise


def dispose_when_idle(client: OpenCodeClient, project_id: int) -> bool:
    """With the lock held and the mark taken: dispose now if no session is busy and say
    so; otherwise mark the project again for the next prompt."""
    with marked_on_failure(project_id):
        if busy_sessions(client):
            rebuild_mark(project_id)
            return False
        client.dispose()
    return True


def rebuild_if_pending(
    client: OpenCodeClient, *, project: Project, prepare: Callable[[], object] | None = None
) -> None:
    """With the lock held, before a prompt: apply a change that is waiting. ``prepare``
    (writing the config) and the current credential go in again (the change's job may
    not have run yet), then the dispose."""
    if not rebuild_claim(project.pk):
        return
    with marked_on_failure(project.pk):
        if prepare is not None:
            prepare()
        provider_id = project.current_model_provider_id
        try:
            credential_put(client, project=project, provider_id=provider_id)
        except CredentialUnavailable as exc:
            # Disconnected: the old key must not answer this prompt. Otherwise (a secret
            # that does not decrypt, say) keep what the server has; the reply will tell.
            if exc.reason in GONE:
                with suppress(NotFound):
                    client.remove_auth(provider_id)
        except OrganisationUnavailable as exc:
            # A rebuild now would have OpenCode fetch the document, fail, and answer 500.
            raise RuntimeFailure(str(exc), retryable=False) from exc
        if not dispose_when_idle(client, project.pk):
            logger.info("project %s: a session is busy; its rebuild waits", project.pk)


def prompt_send(client: OpenCodeClient, session_id: str, text: str, *, model: ModelRef) -> bool:
    """With the lock held: ``prompt_async``, then hold on until the prompt started, so
    that no dispose can abort it (see ``wait_prompt_started``)."""
    sent_at = time.time()
    client.prompt_async(session_id, text, model=model)
    return wait_prompt_started(client, session_id, sent_at=sent_at)


def wait_prompt_started(
    client: OpenCodeClient,
    session_id: str,
    *,
    sent_at: float,
    timeout: float | None = None,
) -> bool:
    """After ``prompt_async``: wait until the session is busy, or already has a reply
    newer than ``sent_at`` (epoch seconds; a fast reply may finish between two polls).
    A poll that times out (the instance still rebuilding on a loaded host) means "not
    yet": the prompt was accepted, so it is never reported as failed. Returns False if
    neither showed within ``timeout``."""
    deadline = time.monotonic() + (PROMPT_START_TIMEOUT_SECONDS if timeout is None else timeout)
    since_ms = int(sent_at * 1000)
    while True:
        try:
            if _started(client, session_id, since_ms):
                return True
        except OpenCodeError as exc:
            if not exc.retryable:
                raise
        if time.monotonic() >= deadline:
            logger.warning("session %s: the prompt did not show as started", session_id)
            return False
        time.sleep(POLL_SECONDS)


def _started(client: OpenCodeClient, session_id: str, since_ms: int) -> bool:
    if session_id in busy_sessions(client):
        return True
    last = client.messages(session_id, limit=1)
    info = last[-1].get("info", {}) if last else {}
    return info.get("role") == "assistant" and info.get("time", {}).get("created", 0) >= since_ms
