"""Which credential a user has for a provider, shaped for OpenCode's ``PUT /auth``.

Import these from ``providers.services`` (the app's public surface). Nothing here logs,
audits or returns a secret except ``Credential.body``, which exists to be PUT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from doce.encrypted_fields import UNDECRYPTABLE_MESSAGE, is_undecryptable
from providers.audit import audit_record
from providers.models import AuditEvent, ProviderConnection, UserSettings, key_hint

logger = logging.getLogger(__name__)

Action = AuditEvent.Action
Status = ProviderConnection.Status
LEGACY_PROVIDER_ID = "openrouter"


@dataclass(frozen=True, repr=False)
class Credential:
    """A decrypted credential, shaped for ``PUT /auth/{provider_id}`` (``body``).

    ``source`` is ``connection`` or ``legacy`` (the old system's key, phase 1 fallback,
    ``connection_id`` None). The repr leaves the body out, so a log line or a traceback
    that shows the object does not show the key.
    """

    user_id: int
    provider_id: str
    body: dict[str, Any]
    source: str
    connection_id: int | None
    key_hint: str

    def __repr__(self) -> str:
        return (
            f"Credential(provider_id={self.provider_id!r}, source={self.source!r}, "
            f"connection_id={self.connection_id!r}, key_hint={self.key_hint!r})"
        )


class CredentialUnavailable(Exception):
    """The user has no usable credential for the provider; ``str()`` says why, for the user.

    ``reason``: ``missing`` (nothing connected), ``revoked``, ``undecryptable`` (the
    connection is now marked ``error``) or ``incomplete`` (a required secret is empty).
    """

    def __init__(self, provider_id: str, reason: str, message: str, connection_id=None):
        super().__init__(message)
        self.provider_id = provider_id
        self.reason = reason
        self.connection_id = connection_id


def credential_for(*, user: AbstractBaseUser | int, provider_id: str) -> Credential:
    """The credential ``user`` (a user or its id) has for ``provider_id``.

    The connection wins whenever one exists. Without one, ``openrouter`` falls back to the
    legacy key while the user's legacy key has not been migrated (after migration a
    deleted connection means "disconnected", so the legacy key does not come back).
    ``expired`` and ``error`` connections are still returned: OpenCode refreshes OAuth
    tokens itself, and a key that failed once may work again; the provider has the last
    word. Raises ``CredentialUnavailable``. One query (two for the legacy fallback).
    """
    user_id = getattr(user, "pk", user)
    connection = ProviderConnection.objects.filter(user_id=user_id, provider_id=provider_id).first()
    if connection is None:
        if provider_id == LEGACY_PROVIDER_ID:
            legacy = _legacy_credential(user_id)
            if legacy is not None:
                return legacy
        raise CredentialUnavailable(
            provider_id, "missing", f"No credential for {provider_id}: connect it in Settings."
        )
    if connection.status == Status.REVOKED:
        raise CredentialUnavailable(
            provider_id,
            "revoked",
            f"The {provider_id} connection was revoked: connect it again in Settings.",
            connection.pk,
        )
    if connection.undecryptable_fields():
        _record_undecryptable(connection)
        raise CredentialUnavailable(
            provider_id, "undecryptable", f"{provider_id}: {UNDECRYPTABLE_MESSAGE}", connection.pk
        )
    if connection.status == Status.ERROR and connection.error_message == UNDECRYPTABLE_MESSAGE:
        _record_recovered(connection)  # the key was restored
    missing = connection.missing_secrets()
    if missing:
        raise CredentialUnavailable(
            provider_id,
            "incomplete",
            f"The {provider_id} connection has no {missing[0].replace('_', ' ')}.",
            connection.pk,
        )
    return Credential(
        user_id=user_id,
        provider_id=provider_id,
        body=connection.auth_body(),
        source="connection",
        connection_id=connection.pk,
        key_hint=connection.key_hint,
    )


def _legacy_credential(user_id: int) -> Credential | None:
    row = (
        UserSettings.objects.filter(pk=user_id, migration_completed_at__isnull=True)
        .only("openrouter_api_key")
        .first()
    )
    if row is None or not row.openrouter_api_key:
        return None
    if is_undecryptable(row.openrouter_api_key):
        raise CredentialUnavailable(
            LEGACY_PROVIDER_ID,
            "undecryptable",
            f"{LEGACY_PROVIDER_ID} (legacy key): {UNDECRYPTABLE_MESSAGE}",
        )
    key = str(row.openrouter_api_key)
    return Credential(
        user_id=user_id,
        provider_id=LEGACY_PROVIDER_ID,
        body={"type": "api", "key": key},
        source="legacy",
        connection_id=None,
        key_hint=key_hint(key),
    )


def _record_undecryptable(connection: ProviderConnection) -> None:
    """Mark the connection ``error`` once (not at every pipeline run); the ciphertext is
    not written, so restoring the key recovers it."""
    changed = (
        ProviderConnection.objects.filter(pk=connection.pk)
        .exclude(status=Status.ERROR, error_message=UNDECRYPTABLE_MESSAGE)
        .update(status=Status.ERROR, error_message=UNDECRYPTABLE_MESSAGE, updated_at=timezone.now())
    )
    if changed:
        logger.warning(
            "provider connection %s (%s): %s", connection.pk, connection.provider_id,
            UNDECRYPTABLE_MESSAGE,
        )  # fmt: skip
        audit_record(
            action=Action.VALIDATION_FAILED,
            connection=connection,
            detail={"message": UNDECRYPTABLE_MESSAGE, "fields": connection.undecryptable_fields()},
        )


def _record_recovered(connection: ProviderConnection) -> None:
    changed = ProviderConnection.objects.filter(
        pk=connection.pk, status=Status.ERROR, error_message=UNDECRYPTABLE_MESSAGE
    ).update(status=Status.CONNECTED, error_message="", updated_at=timezone.now())
    if changed:
        connection.status, connection.error_message = Status.CONNECTED, ""
        audit_record(
            action=Action.VALIDATED,
            connection=connection,
            detail={"message": "decrypts again: the key that made it is configured"},
        )


def credential_mark_injected(*, credential: Credential, project_id: int | None) -> None:
    """Record that the pipeline put ``credential`` into a project's OpenCode server."""
    now = timezone.now()
    if credential.connection_id is not None:
        ProviderConnection.objects.filter(pk=credential.connection_id).update(last_used_at=now)
    AuditEvent.objects.create(
        action=Action.INJECTED,
        user_id=credential.user_id,
        provider_id=credential.provider_id,
        connection_id=credential.connection_id,
        project_id=project_id,
        detail={"source": credential.source},
    )


def credential_mark_removed(
    *, user: AbstractBaseUser | int, provider_id: str, project_id: int | None
) -> None:
    """Record that the pipeline removed a provider's credential from a project's server."""
    AuditEvent.objects.create(
        action=Action.REMOVED,
        user_id=getattr(user, "pk", user),
        provider_id=provider_id,
        project_id=project_id,
    )
