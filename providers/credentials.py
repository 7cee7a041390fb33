"""Which credential a user has for a provider, as the OpenCode credential types.

A connection becomes a ``doce.opencode`` credential (api / oauth) in one
function, ``opencode_credential``, and its provider options (``providers.options``) a
``ProviderConfig`` in one other, ``opencode_provider_config``; ``credential_fields`` is
the inverse of the first (the tokens an OAuth sign-in left in a server's auth.json, back
into connection fields). Nothing here logs or audits a secret; the credential types keep
theirs out of ``repr``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.utils import timezone

from doce.encrypted_fields import UNDECRYPTABLE_MESSAGE, is_undecryptable
from doce.keyring import UndecryptableError
from doce.opencode import (
    ApiKeyCredential,
    Credential,
    OAuthCredential,
    ProviderConfig,
    WellKnownCredential,
)
from doce.opencode.types import AWS_CREDENTIALS_FILE, GOOGLE_CREDENTIALS_FILE
from providers import options as provider_options
from providers.audit import audit_record
from providers.catalog import FREE_PROVIDER_ID, free_models
from providers.legacy import LEGACY_PROVIDER_ID
from providers.models import AuditEvent, ProviderConnection, key_hint
from providers.selectors import connection_in_use, legacy_keys_pending

logger = logging.getLogger(__name__)

Action = AuditEvent.Action
AuthType = ProviderConnection.AuthType
Status = ProviderConnection.Status


@dataclass(frozen=True)
class UserCredential:
    """The credential a user has for a provider, and where it came from: ``source`` is
    ``connection`` (the user's own), ``shared`` (a team key granted to the user) or
    ``legacy`` (the old system's key, ``connection_id`` None)."""

    user_id: int
    provider_id: str
    credential: Credential
    source: str
    connection_id: int | None
    key_hint: str


def opencode_credential(connection: ProviderConnection) -> Credential:
    """The connection as OpenCode stores it (``PUT /auth/{provider_id}``). Raises
    ``UndecryptableError`` rather than sending a placeholder."""
    if connection.undecryptable_fields():
        raise UndecryptableError(UNDECRYPTABLE_MESSAGE)
    if connection.auth_type == AuthType.OAUTH:
        expires = connection.oauth_expires_at
        return OAuthCredential(
            access=str(connection.oauth_access_token or ""),
            refresh=str(connection.oauth_refresh_token or ""),
            expires=int(expires.timestamp() * 1000) if expires else 0,
            account_id=connection.oauth_account_id or None,
            enterprise_url=connection.oauth_enterprise_url or None,
        )
    return ApiKeyCredential(
        key=str(connection.api_key or ""), metadata=dict(connection.metadata or {}) or None
    )


def opencode_provider_config(connection: ProviderConnection) -> ProviderConfig | None:
    """The connection's options as OpenCode reads them (docs/providers.md), or None when
    it has none. Raises ``UndecryptableError`` rather than leaving a secret out.

    - Azure: ``resourceName`` in opencode.json (the key goes through ``PUT /auth``).
    - Amazon Bedrock: ``region`` in opencode.json; access keys as the profile
      ``AWS_PROFILE`` of the home's AWS credentials file, named by ``options.profile``
      (an API key instead goes through ``PUT /auth``: OpenCode makes it the bearer token).
    - Google Vertex: ``project`` and ``location`` in opencode.json; the service-account
      key as the home's application-default credentials, where Google's SDK looks.
    - A custom endpoint: its headers, each value in a file of the home.
    """
    if connection.undecryptable_fields():
        raise UndecryptableError(UNDECRYPTABLE_MESSAGE)
    options = dict(connection.options or {})
    secrets = connection.secret_option_values
    files: dict[str, str] = {}
    if secrets.get("accessKeyId") and secrets.get("secretAccessKey"):
        lines = [
            f"[{provider_options.AWS_PROFILE}]",
            f"aws_access_key_id = {secrets['accessKeyId']}",
            f"aws_secret_access_key = {secrets['secretAccessKey']}",
        ]
        if secrets.get("sessionToken"):
            lines.append(f"aws_session_token = {secrets['sessionToken']}")
        files[AWS_CREDENTIALS_FILE] = "\n".join(lines) + "\n"
        options["profile"] = provider_options.AWS_PROFILE
    if secrets.get("serviceAccount"):
        files[GOOGLE_CREDENTIALS_FILE] = str(secrets["serviceAccount"])
    headers = dict(secrets.get(provider_options.HEADERS) or {})
    if not (options or files or headers):
        return None
    return ProviderConfig(
        provider_id=connection.provider_id, options=options, headers=headers, files=files
    )


def provider_config_for(*, user: AbstractBaseUser | int, provider_id: str) -> ProviderConfig | None:
    """What a project on ``provider_id`` needs in its config beyond the credential, or
    None: no connection, none usable (revoked, expired, undecryptable: the credential
    step says why), or no options."""
    connection = connection_in_use(user=getattr(user, "pk", user), provider_id=provider_id)
    if connection is None or connection.status in (Status.REVOKED, Status.EXPIRED):
        return None
    try:
        return opencode_provider_config(connection)
    except UndecryptableError:
        return None


def credential_fields(credential: Credential) -> dict[str, Any]:
    """The inverse of ``opencode_credential``: the connection fields (for
    ``connection_create`` / ``connection_update``) that hold ``credential``."""
    if isinstance(credential, OAuthCredential):
        expires = credential.expires
        return {
            "auth_type": AuthType.OAUTH,
            "oauth_access_token": credential.access,
            "oauth_refresh_token": credential.refresh,
            "oauth_expires_at": datetime.fromtimestamp(expires / 1000, tz=UTC) if expires else None,
            "oauth_account_id": (credential.account_id or "")[:255],
            "oauth_enterprise_url": _url(credential.enterprise_url),
        }
    if isinstance(credential, WellKnownCredential):
        # Kept under an organisation's URL, not a provider: doce does not store them.
        raise ValueError("doce does not store well-known entries")
    return {"auth_type": AuthType.API, "api_key": credential.key}


def _url(value: str | None) -> str:
    """GitHub Enterprise answers a domain ("company.ghe.com"); the column takes a URL."""
    value = (value or "").strip()
    if value and "://" not in value:
        value = f"https://{value}"
    return value[:500]


#: What a project shows when its provider has no usable credential or rejects it.
PROVIDER_NOT_CONFIGURED = "Provider not configured or key rejected"

#: What an OAuth connection whose tokens cannot be refreshed any more tells the user.
SIGN_IN_AGAIN = "Sign in again"

#: The refresh token a follower project gets (docs/oauth-tokens.md): not a token, so a
#: follower that tries to refresh is refused by the provider, and never spends the real
#: one that its holder project may spend at the same moment.
FOLLOWER_REFRESH = "doce-follower-refreshes-through-its-holder"


class CredentialUnavailable(Exception):
    """The user has no usable credential for the provider; ``str()`` says why, for the user.

    ``reason``: ``missing`` (nothing connected), ``revoked``, ``expired`` (an OAuth
    sign-in whose refresh failed: sign in again), ``undecryptable`` (the
    connection is now marked ``error``), ``incomplete`` (a required secret is empty) or
    ``keyless_endpoint`` (a custom endpoint saved without a key, e.g. a local Ollama, a
    provider whose options carry its credential (Bedrock's access keys, Vertex's service
    account: they travel in ``opencode_provider_config``), or OpenCode Zen's free models
    with no Zen key connected: there is nothing to inject, and nothing is wrong).
    """

    KEYLESS_ENDPOINT = "keyless_endpoint"

    def __init__(self, provider_id: str, reason: str, message: str, connection_id=None):
        super().__init__(message)
        self.provider_id = provider_id
        self.reason = reason
        self.connection_id = connection_id


def credential_for(
    *, user: AbstractBaseUser | int, provider_id: str, holder: int | None = None
) -> UserCredential:
    """The credential ``user`` (a user or its id) has for ``provider_id``.

    The connection in use (``providers.selectors.connections_in_use``: the user's own,
    else a team key granted to them) wins whenever one exists. Without one,
    ``openrouter`` falls back to the legacy key while the user's legacy key has not
    been migrated (after migration a deleted connection means "disconnected", so the
    legacy key does not come back).
    ``error`` connections are still returned (a key that failed once may work again; the
    provider has the last word); ``expired`` ones are not: their refresh failed, so only
    a new sign-in helps.

    An OAuth credential carries the real refresh token only for its holder: ``holder``
    (the id of the project it is for) becomes the holder when there is none, and every
    other caller gets ``FOLLOWER_REFRESH`` instead (docs/oauth-tokens.md). Raises
    ``CredentialUnavailable``. One query (two for the legacy fallback or a new holder).
    """
    user_id = getattr(user, "pk", user)
    connection = connection_in_use(user=user_id, provider_id=provider_id)
    if connection is None:
        if provider_id == LEGACY_PROVIDER_ID:
            legacy = _legacy_credential(user_id)
            if legacy is not None:
                return legacy
        if provider_id == FREE_PROVIDER_ID and free_models():
            raise CredentialUnavailable(
                provider_id,
                CredentialUnavailable.KEYLESS_ENDPOINT,
                f"{provider_id}: its free models need no key.",
            )
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
    if connection.status == Status.EXPIRED:
        raise CredentialUnavailable(
            provider_id,
            "expired",
            f"The {provider_id} sign-in has expired: {SIGN_IN_AGAIN.lower()} in Settings.",
            connection.pk,
        )
    if connection.undecryptable_fields():
        _record_undecryptable(connection)
        raise CredentialUnavailable(
            provider_id, "undecryptable", f"{provider_id}: {UNDECRYPTABLE_MESSAGE}", connection.pk
        )
    if connection.status == Status.ERROR and connection.error_message == UNDECRYPTABLE_MESSAGE:
        connection_mark_recovered(connection)  # the key was restored
    missing = connection.missing_secrets()
    if missing:
        keyless = not connection.missing_secrets(keyless_custom_ok=True)
        raise CredentialUnavailable(
            provider_id,
            CredentialUnavailable.KEYLESS_ENDPOINT if keyless else "incomplete",
            f"The {provider_id} connection has no {missing[0].replace('_', ' ')}.",
            connection.pk,
        )
    credential = opencode_credential(connection)
    if isinstance(credential, OAuthCredential) and not _holds_refresh(connection, holder):
        credential = replace(credential, refresh=FOLLOWER_REFRESH)
    return UserCredential(
        user_id=user_id,
        provider_id=provider_id,
        credential=credential,
        source="shared" if connection.is_shared else "connection",
        connection_id=connection.pk,
        key_hint=connection.key_hint,
    )


def _holds_refresh(connection: ProviderConnection, holder: int | None) -> bool:
    """Is ``holder`` the connection's refresh-token holder (taking the place when it is
    free)? A conditional UPDATE, so two projects started together cannot both be."""
    if holder is None or not connection.oauth_refresh_token:
        return False
    if connection.oauth_token_holder == holder:
        return True
    if connection.oauth_token_holder is not None:
        return False
    taken = ProviderConnection.objects.filter(
        pk=connection.pk, oauth_token_holder__isnull=True
    ).update(oauth_token_holder=holder)
    if taken:
        connection.oauth_token_holder = holder
    return bool(taken)


def _legacy_credential(user_id: int) -> UserCredential | None:
    row = legacy_keys_pending().filter(pk=user_id).only("openrouter_api_key").first()
    if row is None or not row.openrouter_api_key:
        return None
    if is_undecryptable(row.openrouter_api_key):
        raise CredentialUnavailable(
            LEGACY_PROVIDER_ID,
            "undecryptable",
            f"{LEGACY_PROVIDER_ID} (legacy key): {UNDECRYPTABLE_MESSAGE}",
        )
    key = str(row.openrouter_api_key)
    return UserCredential(
        user_id=user_id,
        provider_id=LEGACY_PROVIDER_ID,
        credential=ApiKeyCredential(key=key),
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
            "provider connection %s (%s): %s",
            *(connection.pk, connection.provider_id, UNDECRYPTABLE_MESSAGE),
        )
        audit_record(
            action=Action.VALIDATION_FAILED,
            connection=connection,
            detail={"message": UNDECRYPTABLE_MESSAGE, "fields": connection.undecryptable_fields()},
        )


def connection_mark_recovered(connection: ProviderConnection) -> bool:
    """A connection marked "cannot decrypt" whose secrets open again: ``connected``,
    audited once. False when it was not so marked (any more)."""
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
    return bool(changed)


def credential_mark_injected(*, credential: UserCredential, project_id: int | None) -> None:
    """Record that the pipeline put ``credential`` into a project's OpenCode server.
    (``last_used_at`` is the last model call it paid for: projects.conversation.)"""
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
