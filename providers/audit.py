"""The audit log's one writer: who did what to which connection or project. Never a secret."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser

from doce.redaction import redact
from providers.models import AuditEvent, ProviderConnection


def audit_record(
    *,
    action: str,
    user: AbstractBaseUser | None = None,
    actor: AbstractBaseUser | None = None,
    actor_name: str = "",
    provider_id: str = "",
    connection: ProviderConnection | None = None,
    project_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Write one audit event. ``user`` and ``provider_id`` default to the connection's.

    String values in ``detail`` pass through the log redaction as a last line of defence:
    callers must not put secrets there in the first place.
    """
    user_id = getattr(user, "pk", None)
    if connection is not None:
        user_id = user_id or connection.user_id
        provider_id = provider_id or connection.provider_id
    if actor is not None and not actor_name:
        actor_name = actor.get_username()
    return AuditEvent.objects.create(
        action=action,
        user_id=user_id,
        actor=actor,
        actor_name=actor_name,
        provider_id=provider_id,
        connection=connection,
        project_id=project_id,
        detail=_redacted(detail or {}),
    )


def _redacted(value):
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_redacted(item) for item in value]
    return value
