"""Put a user's credential into a project's OpenCode server, or take it out.

The secret is read from the database here, at the last moment, and goes straight into
``PUT /auth``; it never travels through Celery, logs or job rows.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Q
from django.utils import timezone

from doce.opencode import (
    ApiKeyCredential,
    Credential,
    OAuthCredential,
    OpenCodeError,
    WellKnownCredential,
)
from projects import services as project_services
from projects.models import Project
from providers.models import ProviderConnection
from providers.services import (
    CredentialUnavailable,
    credential_for,
    credential_mark_injected,
    credential_mark_removed,
)
from queue_jobs.engine import StepError

logger = logging.getLogger(__name__)

PROVIDER_NOT_CONFIGURED = "Provider not configured or key rejected"


def opencode_credential(body: dict[str, Any]) -> Credential:
    """The client's typed credential for an auth.json-shaped body."""
    kind = body.get("type")
    if kind == "api":
        return ApiKeyCredential(key=body["key"], metadata=body.get("metadata") or None)
    if kind == "oauth":
        return OAuthCredential(
            access=body["access"],
            refresh=body["refresh"],
            expires=int(body.get("expires") or 0),
            account_id=body.get("accountId"),
            enterprise_url=body.get("enterpriseUrl"),
        )
    if kind == "wellknown":
        return WellKnownCredential(url=body["key"], token=body["token"])
    raise ValueError(f"unknown credential type {kind!r}")


def _keyless_custom_provider(owner_id: int, provider_id: str) -> bool:
    """A custom endpoint saved without a key (a local Ollama, say) needs no credential."""
    return (
        ProviderConnection.objects.filter(user_id=owner_id, provider_id=provider_id)
        .filter(Q(api_key__isnull=True) | Q(api_key=""))
        .exclude(base_url="")
        .exists()
    )


def inject(*, project: Project, provider_id: str | None = None, dispose: bool) -> None:
    provider_id = provider_id or project.current_model_provider_id
    try:
        credential = credential_for(user=project.owner_id, provider_id=provider_id)
    except CredentialUnavailable as exc:
        if exc.reason == "incomplete" and _keyless_custom_provider(project.owner_id, provider_id):
            _mark_set(project)
            return
        raise StepError(
            f"{PROVIDER_NOT_CONFIGURED}: {exc}",
            retryable=False,
            kind=Project.ErrorKind.PROVIDER_AUTH,
        ) from exc
    with project_services.project_client(project) as client:
        try:
            client.set_auth(provider_id, opencode_credential(credential.body))
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
