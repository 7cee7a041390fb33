"""Put a user's credential into a project's OpenCode server, or take it out.

The secret is read from the database here, at the last moment, and goes straight into
``PUT /auth``; it never travels through Celery, logs or job rows.
"""

from __future__ import annotations

import logging

from django.utils import timezone

from doce.opencode import OpenCodeError
from projects import services as project_services
from projects.models import Project
from providers.services import (
    PROVIDER_NOT_CONFIGURED,
    CredentialUnavailable,
    credential_for,
    credential_mark_injected,
    credential_mark_removed,
)
from queue_jobs.engine import StepError

logger = logging.getLogger(__name__)


def inject(*, project: Project, provider_id: str | None = None, dispose: bool) -> None:
    provider_id = provider_id or project.current_model_provider_id
    try:
        credential = credential_for(user=project.owner_id, provider_id=provider_id)
    except CredentialUnavailable as exc:
        if exc.reason == CredentialUnavailable.KEYLESS_ENDPOINT:
            _mark_set(project)  # a local endpoint without a key needs no credential
            return
        raise StepError(
            f"{PROVIDER_NOT_CONFIGURED}: {exc}",
            retryable=False,
            kind=Project.ErrorKind.PROVIDER_AUTH,
        ) from exc
    with project_services.project_client(project) as client:
        try:
            client.set_auth(provider_id, credential.credential)
            if dispose:
                client.dispose()
        except OpenCodeError as exc:
            raise StepError(
                f"OpenCode did not accept the {provider_id} credential: {exc.message}",
                retryable=exc.retryable,
            ) from exc
    _mark_set(project)
    credential_mark_injected(credential=credential, project_id=project.pk)


def remove(*, project: Project, provider_id: str) -> None:
    with project_services.project_client(project) as client:
        try:
            client.remove_auth(provider_id)
            client.dispose()
        except OpenCodeError as exc:
            raise StepError(
                f"OpenCode did not remove the {provider_id} credential: {exc.message}",
                retryable=exc.retryable,
            ) from exc
    if provider_id == project.current_model_provider_id:
        Project.objects.filter(pk=project.pk).update(
            provider_credentials_set=False, updated_at=timezone.now()
        )
    credential_mark_removed(user=project.owner_id, provider_id=provider_id, project_id=project.pk)


def _mark_set(project: Project) -> None:
    Project.objects.filter(pk=project.pk).update(
        provider_credentials_set=True, updated_at=timezone.now()
    )
    # A fresh credential answers an earlier "key rejected": let the next reply judge it.
    Project.objects.filter(pk=project.pk, error_kind=Project.ErrorKind.PROVIDER_AUTH).exclude(
        status=Project.Status.ERROR
    ).update(error_kind="", error_message="")
