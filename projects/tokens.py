"""OAuth tokens that stay alive across a user's projects (docs/oauth-tokens.md).

OpenCode refreshes an expired OAuth access token itself, inside the server that needs
it, and writes the new tokens into that server's own auth.json. Providers that rotate
refresh tokens refuse one that was used before, so two servers holding the same refresh
token must never both spend it. Hence:

- One project per OAuth connection, its *holder* (``ProviderConnection.
  oauth_token_holder``), gets the real refresh token; every other project of the user
  gets the access token with ``FOLLOWER_REFRESH`` in its place (``credential_for``).
- The watcher (``oauth_tokens_watch``, run by beat every few seconds) reads the holder's
  auth.json back; newer tokens are stored on the connection (encrypted, audited) and the
  followers get them (``opencode.follow_oauth_tokens`` jobs: ``PUT /auth`` with no
  dispose, since OpenCode's OAuth plugins read auth.json at every request).
- Before doce sends a prompt to a follower whose access token is due for refresh, the
  follower becomes the holder (``oauth_lease``): the old holder's tokens are read back
  and it is given a follower's credential first, so the refresh its server is about to
  make spends the one real refresh token, once.
- A holder that stops or is deleted lets go; the next project that needs a refresh (or
  is given the credential) takes the place.

Each runtime reads the auth.json back its own way (``Runtime.auth_file_read``): a file
under the project's folder, or ``docker cp`` from the container's home volume.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from doce.opencode import OAuthCredential, OpenCodeClient, OpenCodeError, credential_from_json
from doce.opencode.runtimes import RuntimeState, get_runtime
from projects import instance
from projects.jobs import CREDENTIAL_ATTEMPTS, JobType
from projects.models import Project
from providers.models import ProviderConnection
from providers.selectors import connection_in_use
from providers.services import (
    CredentialUnavailable,
    connection_tokens_refreshed,
    credential_for,
    oauth_holder_move,
)
from queue_jobs.engine import StepError
from queue_jobs.models import Job
from queue_jobs.pipeline import PipelineBusy, pipeline_enqueue
from queue_jobs.registry import step

logger = logging.getLogger(__name__)

AuthType = ProviderConnection.AuthType
Status = ProviderConnection.Status

#: Projects whose server may hold and use a credential.
LIVE = (Project.Status.RUNNING, Project.Status.STARTING)
#: A holder at work (starting or running a prompt) refreshes when it needs to: a follower
#: that is due waits this long for that refresh before it takes the place anyway.
FOLLOW_WAIT_SECONDS = 20.0
FOLLOW_POLL_SECONDS = 0.2


# --- reading a holder's tokens back ----------------------------------------------------


def oauth_tokens_watch() -> int:
    """Read back every holder's tokens; holders that no longer run let go. Returns how
    many connections got new tokens."""
    stored = 0
    holders = ProviderConnection.objects.filter(
        auth_type=AuthType.OAUTH, oauth_token_holder__isnull=False
    ).values_list("pk", "provider_id", "oauth_token_holder")
    for connection_id, provider_id, holder in holders:
        project = Project.objects.filter(pk=holder).first()
        if project is not None and oauth_read_back(
            project=project, connection_id=connection_id, provider_id=provider_id
        ):
            stored += 1
        if project is None or project.status not in LIVE:
            # Its last tokens are read back above; the next project takes the place.
            oauth_holder_move(connection_id=connection_id, old=holder, new=None)
    return stored


def oauth_read_back(*, project: Project, connection_id: int, provider_id: str) -> bool:
    """Store the tokens ``project`` (the holder) has in its auth.json when they are newer
    than the connection's; True if they were."""
    credential = _auth_entry(project, provider_id)
    if credential is None:
        return False
    return connection_tokens_refreshed(
        connection_id=connection_id, holder=project.pk, credential=credential
    )


def _auth_entry(project: Project, provider_id: str) -> OAuthCredential | None:
    """The provider's entry in the project's auth.json, read through its runtime (a file
    under the project's folder, or ``docker cp`` from its container)."""
    if not project.runtime_state:
        return None
    state = RuntimeState.from_dict(project.runtime_state)
    raw = get_runtime(project.runtime or None).auth_file_read(state)
    if raw is None:
        return None
    try:
        entry = json.loads(raw).get(provider_id)
        credential = credential_from_json(entry) if entry is not None else None
    except (ValueError, AttributeError) as exc:
        logger.warning("project %s: its auth.json is not read: %s", project.pk, type(exc).__name__)
        return None
    return credential if isinstance(credential, OAuthCredential) else None


# --- followers -------------------------------------------------------------------------


def oauth_tokens_follow(*, user_id: int | None, provider_id: str, holder: int) -> int:
    """The holder refreshed: each other live project on that provider that uses the
    connection (the user's, or for a team key, ``user_id`` None, those of everyone
    using it) gets the new access token (a job each); returns how many were queued."""
    projects = Project.objects.filter(
        status__in=LIVE, current_model_provider_id=provider_id
    ).exclude(pk=holder)
    if user_id is not None:
        projects = projects.filter(owner_id=user_id)
    else:  # a team key: the projects of owners without a key of their own for it
        own = ProviderConnection.objects.filter(provider_id=provider_id, user__isnull=False)
        projects = projects.exclude(owner_id__in=own.values("user_id"))
    count = 0
    for project in projects.only("pk", "owner_id"):
        try:
            with transaction.atomic():
                pipeline_enqueue(
                    subject=project,
                    job_types=[JobType.FOLLOW_OAUTH_TOKENS],
                    params={"provider_id": provider_id},
                )
            count += 1
        except PipelineBusy:
            logger.info("project %s: tokens already on their way", project.pk)
    return count


@step(JobType.FOLLOW_OAUTH_TOKENS, max_attempts=CREDENTIAL_ATTEMPTS)
def follow_oauth_tokens(job: Job) -> None:
    project = job.subject
    if project.status not in LIVE or not project.runtime_state:
        return  # a stopped project gets the current tokens at its next start
    try:
        with _client(project) as client:
            # No dispose: OpenCode's OAuth plugins read auth.json at every request.
            instance.credential_put(client, project=project, provider_id=job.params["provider_id"])
    except CredentialUnavailable as exc:
        logger.info("project %s: no tokens to follow: %s", project.pk, exc)
    except OpenCodeError as exc:
        raise StepError(
            f"OpenCode did not take the refreshed sign-in: {exc.message}", retryable=exc.retryable
        ) from exc


# --- handing the refresh token over ----------------------------------------------------


def oauth_lease(*, project: Project) -> bool:
    """Before doce sends ``project`` a prompt, with ``project``'s server lock held: when
    its provider's OAuth access token is due for refresh (expires within
    DOCE_OAUTH_REFRESH_MARGIN_SECONDS), make sure the refresh its server is about to
    make spends the real refresh token, once. ``project`` becomes the holder, unless the
    holder is at work (starting a prompt or running one) and so about to refresh itself:
    then ``project`` waits a little for that refresh and takes its result as a follower.
    Returns whether ``project`` holds the refresh token. Never raises: a lease that
    cannot be made leaves the prompt to the provider."""
    provider_id = project.current_model_provider_id
    connection = connection_in_use(user=project.owner_id, provider_id=provider_id)
    if (
        connection is None
        or connection.auth_type != AuthType.OAUTH
        or connection.status != Status.CONNECTED
    ):
        return False
    if connection.oauth_token_holder == project.pk:
        return True
    if not _due(connection.oauth_expires_at):
        return False
    try:
        return _lease(project, connection)
    except (OpenCodeError, CredentialUnavailable) as exc:
        message = getattr(exc, "message", str(exc))
        logger.warning("project %s: %s not handed over: %s", project.pk, provider_id, message)
    return False


def _due(expires) -> bool:
    margin = timedelta(seconds=settings.DOCE_OAUTH_REFRESH_MARGIN_SECONDS)
    return expires is not None and expires <= timezone.now() + margin


def _lease(project: Project, connection: ProviderConnection) -> bool:
    """Take the place from an idle holder at once; follow a holder at work until its
    refresh comes (at most FOLLOW_WAIT_SECONDS), then take the place anyway: a holder
    that has not refreshed by then is not about to, and this prompt is waiting."""
    provider_id = connection.provider_id
    deadline = time.monotonic() + FOLLOW_WAIT_SECONDS
    while True:
        if _take_over(project, connection, force=time.monotonic() >= deadline):
            return True
        holder = Project.objects.filter(pk=connection.oauth_token_holder).first()
        if holder is not None:
            oauth_read_back(project=holder, connection_id=connection.pk, provider_id=provider_id)
        connection = ProviderConnection.objects.filter(pk=connection.pk).first()
        if connection is None or connection.status != Status.CONNECTED:
            return False
        if connection.oauth_token_holder == project.pk:
            return True
        if not _due(connection.oauth_expires_at):
            # The holder refreshed: follow it now (the watcher's job would come later).
            follower = credential_for(user=project.owner_id, provider_id=provider_id)
            with _client(project) as client:
                client.set_auth(provider_id, follower.credential)
            return False
        time.sleep(FOLLOW_POLL_SECONDS)


def _take_over(project: Project, connection: ProviderConnection, *, force: bool) -> bool:
    """Demote the old holder (its newest tokens read back first and after, its server
    lock held so that no prompt of its starts meanwhile), then move the place to
    ``project`` if nobody else took it. False, changing nothing, while the old holder is
    at work (unless ``force``) or when another project took the place first."""
    provider_id = connection.provider_id
    old_id = connection.oauth_token_holder
    old = Project.objects.filter(pk=old_id).first() if old_id is not None else None
    with ExitStack() as stack:
        if old is not None and old.status in LIVE and old.runtime_state:
            try:
                # Never wait for it: two projects taking each other's place must not
                # deadlock, each holding its own lock.
                stack.enter_context(instance.server_lock(old.pk, timeout=0))
            except instance.ServerBusy:
                if not force:
                    return False  # it is starting a prompt that will refresh
            client = stack.enter_context(_client(old))
            if not force and instance.busy_sessions(client):
                return False  # its run refreshes when it needs to
            oauth_read_back(project=old, connection_id=connection.pk, provider_id=provider_id)
            demoted = credential_for(user=old.owner_id, provider_id=provider_id)  # a follower's
            client.set_auth(provider_id, demoted.credential)
            # A refresh it made just before it was demoted is in its auth.json now.
            oauth_read_back(project=old, connection_id=connection.pk, provider_id=provider_id)
        elif old is not None:
            oauth_read_back(project=old, connection_id=connection.pk, provider_id=provider_id)
        if not oauth_holder_move(connection_id=connection.pk, old=old_id, new=project.pk):
            return False  # another project took it first
    credential = credential_for(user=project.owner_id, provider_id=provider_id, holder=project.pk)
    with _client(project) as client:
        client.set_auth(provider_id, credential.credential)
    logger.info(
        "connection %s: project %s holds the refresh token (was %s)",
        *(connection.pk, project.pk, old_id),
    )
    return True


@contextmanager
def _client(project: Project) -> Iterator[OpenCodeClient]:
    state = RuntimeState.from_dict(project.runtime_state)
    client = get_runtime(project.runtime or None).client(state, str(project.server_password))
    try:
        yield client
    finally:
        client.close()
