"""Put a user's credential into a project's OpenCode server, or take it out.

The secret is read from the database here, at the last moment, and goes straight into
``PUT /auth``; it never travels through Celery, logs or job rows. A running server only
uses a changed credential after its instance is rebuilt (a dispose), and a dispose must
never land on a prompt: projects.instance holds the rules, this module applies them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager

from django.db import transaction
from django.utils import timezone

from doce.opencode import OpenCodeClient, OpenCodeError
from doce.opencode.runtimes import RuntimeFailure
from doce.opencode.runtimes.config import write_opencode_config
from projects import instance
from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from projects.organisations import OrganisationUnavailable
from providers.services import (
    PROVIDER_NOT_CONFIGURED,
    CredentialUnavailable,
    credential_mark_removed,
)
from queue_jobs.engine import StepError, StepWait
from queue_jobs.pipeline import PipelineBusy, pipeline_enqueue

logger = logging.getLogger(__name__)

#: How often the rebuild put off by a busy session looks again.
IDLE_RETRY_SECONDS = 2.0


def inject(*, project: Project, provider_id: str | None = None, dispose: bool) -> None:
    """The start-up chain's injection. Right after health the credential applies at once;
    a server that already served the project (``dispose``) is rebuilt: no prompt of doce
    can be running then, since prompts go only to running projects and the initial one
    comes after this step."""
    provider_id = provider_id or project.current_model_provider_id
    with _server(project) as client:
        if not dispose:
            _put(client, project, provider_id)
            return
        instance.rebuild_claim(project.pk)
        with instance.marked_on_failure(project.pk):
            _put(client, project, provider_id)
            _opencode(client.dispose, provider_id, "accept")


def reinject(*, project: Project, provider_id: str) -> None:
    """A changed key (or model, or custom endpoint) on a running project: the config and
    the credential now, the rebuild when no session is busy."""
    with _server(project) as client:
        instance.rebuild_claim(project.pk)  # what is read below is what gets applied
        with instance.marked_on_failure(project.pk):
            try:
                write_opencode_config(project_services.project_spec(project))
            except (RuntimeFailure, ValueError) as exc:
                raise StepError(
                    f"The project's OpenCode config could not be written: {exc}"
                ) from exc
            _put(client, project, provider_id)
        disposed = _opencode(
            lambda: instance.dispose_when_idle(client, project.pk), provider_id, "accept"
        )
    if not disposed:
        _rebuild_later(project)


def remove(*, project: Project, provider_id: str) -> None:
    with _server(project) as client:

        def delete() -> bool:
            instance.rebuild_claim(project.pk)
            with instance.marked_on_failure(project.pk):
                client.remove_auth(provider_id)
            return instance.dispose_when_idle(client, project.pk)

        disposed = _opencode(delete, provider_id, "remove")
    if provider_id == project.current_model_provider_id:
        Project.objects.filter(pk=project.pk).update(
            provider_credentials_set=False, updated_at=timezone.now()
        )
    credential_mark_removed(user=project.owner_id, provider_id=provider_id, project_id=project.pk)
    if not disposed:
        _rebuild_later(project)


@contextmanager
def _server(project: Project) -> Iterator[OpenCodeClient]:
    """The project's client with its server lock held; a lock that others hold too long
    is a retryable step error."""
    with ExitStack() as stack:
        try:
            stack.enter_context(instance.server_lock(project.pk))
        except instance.ServerBusy as exc:
            raise StepError(str(exc), retryable=True) from exc
        yield stack.enter_context(project_services.project_client(project))


def _put(client: OpenCodeClient, project: Project, provider_id: str) -> None:
    try:
        _opencode(
            lambda: instance.credential_put(client, project=project, provider_id=provider_id),
            provider_id,
            "accept",
        )
    except CredentialUnavailable as exc:
        raise StepError(
            f"{PROVIDER_NOT_CONFIGURED}: {exc}",
            retryable=False,
            kind=Project.ErrorKind.PROVIDER_AUTH,
        ) from exc
    except OrganisationUnavailable as exc:  # its document could not be fetched
        raise StepError(str(exc), retryable=False) from exc


def _opencode(action: Callable[[], object], provider_id: str, verb: str):
    try:
        return action()
    except OpenCodeError as exc:
        raise StepError(
            f"OpenCode did not {verb} the {provider_id} credential: {exc.message}",
            retryable=exc.retryable,
        ) from exc


def rebuild_when_idle(*, project: Project) -> None:
    """The rebuild a busy session put off: done once no session is busy, unless a prompt
    did it first. Until then the job waits (``StepWait``, no worker held, no attempt
    counted); the next prompt on an idle session applies it too."""
    if not instance.rebuild_pending(project.pk):
        return  # a prompt applied it
    with _server(project) as client:
        if not instance.rebuild_claim(project.pk):
            return
        disposed = _opencode(
            lambda: instance.dispose_when_idle(client, project.pk),
            project.current_model_provider_id,
            "apply",
        )
    if not disposed:
        raise StepWait(
            "Waiting for the agent to finish before applying the change.",
            retry_in=IDLE_RETRY_SECONDS,
        )


def _rebuild_later(project: Project) -> None:
    """A session was busy: a job of its own waits for idle (one per project)."""
    try:
        with transaction.atomic():
            pipeline_enqueue(subject=project, job_types=[JobType.REBUILD_WHEN_IDLE])
    except PipelineBusy:
        pass  # one already waits, and reads the mark when it runs
