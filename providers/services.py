"""Writes to provider connections: the app's public surface for views, tasks and the
pipeline. Every change writes an ``AuditEvent``; credentials changes are signalled (ids
only) after commit so running projects follow. Nothing here logs or audits a secret.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from doce.encrypted_fields import UNDECRYPTABLE_MESSAGE
from doce.endpoints import endpoint_problem
from doce.inputs import (
    DOUBLE_SUBMIT_WINDOW,
    config_substitution_message,
    has_config_substitution,
)
from doce.opencode import OAuthCredential
from doce.redaction import redact
from providers import options as provider_options
from providers import origins, validation
from providers.audit import audit_record
from providers.credentials import (  # noqa: F401  (the app's public surface)
    FOLLOWER_REFRESH,
    PROVIDER_NOT_CONFIGURED,
    SIGN_IN_AGAIN,
    CredentialUnavailable,
    UserCredential,
    connection_mark_recovered,
    credential_fields,
    credential_for,
    credential_mark_injected,
    credential_mark_removed,
    opencode_credential,
    opencode_provider_config,
    provider_config_for,
)
from providers.legacy import LEGACY_PROVIDER_ID  # noqa: F401
from providers.models import AuditEvent, ProviderConnection, UserSettings
from providers.selectors import connection_for
from providers.signals import (
    credential_changed,
    credential_removed,
    oauth_tokens_refreshed,
    send_on_commit,
)

logger = logging.getLogger(__name__)

Action = AuditEvent.Action
AuthType = ProviderConnection.AuthType
Status = ProviderConnection.Status

_UNSET: Any = object()
#: Longer than any OAuth token seen (JWTs of a few KB); a longer value is not one.
MAX_TOKEN_LENGTH = 16_384


# --- connections ----------------------------------------------------------------------


@sensitive_variables()
def connection_create(
    *,
    user: AbstractBaseUser | None,
    provider_id: str,
    auth_type: str = AuthType.API,
    api_key: str | None = None,
    oauth_access_token: str | None = None,
    oauth_refresh_token: str | None = None,
    oauth_expires_at: datetime | None = None,
    oauth_account_id: str = "",
    oauth_enterprise_url: str = "",
    metadata: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    secret_options: dict[str, Any] | None = None,
    name: str = "",
    base_url: str = "",
    models: list[str] | None = None,
    prices: dict[str, str] | None = None,
    actor: AbstractBaseUser | None = None,
) -> ProviderConnection:
    """Connect ``provider_id`` for ``user``; ValidationError if it is already connected or
    the secrets do not fit ``auth_type``. ``actor`` defaults to the user. ``options`` and
    ``secret_options``: see ``providers.options`` (the secret ones are stored encrypted).
    ``user`` None makes a team key, shared by ``actor`` (``providers.shared``)."""
    connection = ProviderConnection(
        user=user,
        provider_id=(provider_id or "").strip(),
        shared_by=actor if user is None else None,
    )
    _apply(
        connection,
        auth_type=auth_type,
        api_key=api_key,
        oauth_access_token=oauth_access_token,
        oauth_refresh_token=oauth_refresh_token,
        oauth_expires_at=oauth_expires_at,
        oauth_account_id=oauth_account_id,
        oauth_enterprise_url=oauth_enterprise_url,
        metadata=metadata if metadata is not None else {},
        options=options or {},
        secret_options=secret_options or {},
        name=name,
        base_url=base_url,
        models=models if models is not None else [],
        prices=prices or {},
    )
    try:
        with transaction.atomic():
            connection.save()
            audit_record(
                action=Action.CONNECTED,
                actor=actor or user,
                connection=connection,
                detail={"auth_type": connection.auth_type},
            )
    except IntegrityError:
        whose = "a team key" if user is None else "connected"
        raise ValidationError(
            {"provider_id": f"{connection.provider_id} is already {whose}."}
        ) from None
    if user is not None:
        _initialize_settings(user, provider_id=connection.provider_id)
    send_on_commit(
        credential_changed, user_id=getattr(user, "pk", None), provider_id=connection.provider_id
    )
    logger.info(
        "%s connected %s (%s)",
        f"user {user.pk}" if user is not None else "a team",
        *(connection.provider_id, auth_type),
    )
    return connection


@sensitive_variables()
def connection_update(
    *,
    connection: ProviderConnection,
    actor: AbstractBaseUser | None = None,
    auth_type: str = _UNSET,
    api_key: str | None = _UNSET,
    oauth_access_token: str | None = _UNSET,
    oauth_refresh_token: str | None = _UNSET,
    oauth_expires_at: datetime | None = _UNSET,
    oauth_account_id: str = _UNSET,
    oauth_enterprise_url: str = _UNSET,
    metadata: dict[str, str] = _UNSET,
    options: dict[str, Any] = _UNSET,
    secret_options: dict[str, Any] = _UNSET,
    name: str = _UNSET,
    base_url: str = _UNSET,
    models: list[str] = _UNSET,
    prices: dict[str, str] = _UNSET,
) -> ProviderConnection:
    """Change what is given (omitted arguments stay). New secrets reset the status to
    ``connected``; changing ``auth_type`` drops the other type's secrets."""
    changes = {
        key: value
        for key, value in {
            "auth_type": auth_type,
            "api_key": api_key,
            "oauth_access_token": oauth_access_token,
            "oauth_refresh_token": oauth_refresh_token,
            "oauth_expires_at": oauth_expires_at,
            "oauth_account_id": oauth_account_id,
            "oauth_enterprise_url": oauth_enterprise_url,
            "metadata": metadata,
            "options": options,
            "secret_options": secret_options,
            "name": name,
            "base_url": base_url,
            "models": models,
            "prices": prices,
        }.items()
        if value is not _UNSET
    }
    if not changes:
        return connection
    moved = _endpoint_move(connection, changes)
    _apply(connection, **changes)
    new_secrets = bool(set(changes) & {*ProviderConnection.SECRET_FIELDS, "auth_type"})
    if new_secrets:
        connection.status = Status.CONNECTED
        connection.error_message = ""
        connection.last_validated_at = None  # the provider has not seen these yet
    with transaction.atomic():
        connection.save()
        audit_record(
            action=Action.UPDATED,
            actor=actor or connection.user,
            connection=connection,
            detail={"fields": sorted(changes)},  # names only, never values
        )
        if moved is not None:
            audit_record(
                action=Action.ENDPOINT_MOVED,
                actor=actor or connection.user,
                connection=connection,
                detail=moved,
            )
    # Running projects get the new credential, or the endpoint's new URL and models in
    # their opencode.json (queue_jobs listens).
    endpoint_changed = connection.is_custom and set(changes) & {
        "base_url",
        "models",
        "name",
        "prices",
    }
    if new_secrets or endpoint_changed or "options" in changes:
        send_on_commit(
            credential_changed, user_id=connection.user_id, provider_id=connection.provider_id
        )
    return connection


def _endpoint_move(connection: ProviderConnection, changes: dict[str, Any]) -> dict | None:
    """A custom endpoint whose base URL moves to another scheme, host or port forgets its
    stored key and header values unless ``changes`` gives them again (typed in the same
    form): ``changes`` is completed so, and the audit detail returned (origins only, never
    a path, a query or a secret). None when the endpoint stays where it was."""
    new_url = changes.get("base_url", connection.base_url)
    entry = provider_options.option_set(connection.provider_id, custom=connection.is_custom)
    moved_options = (
        provider_options.endpoint_options_changed(entry, connection.options, changes["options"])
        if isinstance(changes.get("options"), dict)
        else []
    )
    url_moved = bool(connection.base_url) and origins.origin_changed(connection.base_url, new_url)
    if not url_moved and not moved_options:
        return None
    detail: dict[str, Any] = {}
    if url_moved:
        detail["from"] = origins.origin_text(connection.base_url)
        detail["to"] = origins.origin_text(new_url)
    if moved_options:  # non-secret values (e.g. an Azure resource name)
        detail["options"] = {
            key: [(connection.options or {}).get(key), changes["options"].get(key)]
            for key in moved_options
        }
    typed = sorted({"api_key", "secret_options"} & set(changes))
    dropped = []
    if "api_key" not in changes:
        if connection.api_key:
            dropped.append("api_key")
        changes["api_key"] = None
    if "secret_options" not in changes:
        changes["secret_options"] = {}
    if connection.secret_option_values and not changes["secret_options"]:
        dropped.append("headers" if connection.is_custom else "secret_options")
    return {**detail, "dropped": dropped, "retyped": typed}


def connection_revoke(
    *, connection: ProviderConnection, actor: AbstractBaseUser | None = None, reason: str = ""
) -> ProviderConnection:
    """Stop using a connection (status ``revoked``) but keep the row and its secrets for
    the record; connecting again replaces them."""
    with transaction.atomic():
        connection.status = Status.REVOKED
        connection.error_message = redact(reason)
        connection.save(update_fields=["status", "error_message", "updated_at"])
        audit_record(
            action=Action.REVOKED, actor=actor, connection=connection, detail={"reason": reason}
        )
    send_on_commit(
        credential_removed, user_id=connection.user_id, provider_id=connection.provider_id
    )
    return connection


def connection_delete(
    *, connection: ProviderConnection, actor: AbstractBaseUser | None = None
) -> None:
    """Disconnect: the row and its secrets are deleted; the audit event stays."""
    with transaction.atomic():
        audit_record(
            action=Action.DISCONNECTED,
            actor=actor or connection.user,
            connection=connection,
            detail={"auth_type": connection.auth_type},
        )
        connection.delete()
    send_on_commit(
        credential_removed, user_id=connection.user_id, provider_id=connection.provider_id
    )


def connection_mark_error(
    *,
    connection: ProviderConnection,
    message: str,
    actor: AbstractBaseUser | None = None,
    project_id: int | None = None,
) -> ProviderConnection:
    """The provider or OpenCode rejected the credential (e.g. ``APIError`` 401) in
    project ``project_id`` (if known). For an OAuth sign-in that means its tokens can no
    longer be refreshed: ``expired``, "Sign in again". A follower project's failure says
    nothing of the tokens (it holds no refresh token; it gets the holder's next ones)."""
    if connection.auth_type == AuthType.OAUTH:
        holder = (  # as it is now: the holder may have moved since ``connection`` was read
            ProviderConnection.objects.filter(pk=connection.pk)
            .values_list("oauth_token_holder", flat=True)
            .first()
        )
        if project_id is not None and holder is not None and holder != project_id:
            logger.info(
                "connection %s: follower project %s was refused; it follows project %s",
                *(connection.pk, project_id, holder),
            )
            return connection
        return connection_mark_expired(connection=connection, message=message, actor=actor)
    with transaction.atomic():
        connection.status = Status.ERROR
        connection.error_message = redact(message)[:2000]
        connection.save(update_fields=["status", "error_message", "updated_at"])
        audit_record(
            action=Action.VALIDATION_FAILED,
            actor=actor,
            connection=connection,
            detail={"message": connection.error_message},
        )
    return connection


def connection_mark_expired(
    *, connection: ProviderConnection, message: str, actor: AbstractBaseUser | None = None
) -> ProviderConnection:
    """An OAuth connection whose tokens cannot be refreshed (the refresh failed or the
    provider refuses them): ``expired`` with "Sign in again", no longer injected, and
    nobody holds its refresh token any more."""
    with transaction.atomic():
        connection.status = Status.EXPIRED
        connection.error_message = redact(f"{SIGN_IN_AGAIN}: {message}")[:2000]
        connection.oauth_token_holder = None
        connection.save(
            update_fields=[
                "status",
                "error_message",
                "oauth_token_holder",
                "updated_at",
            ]
        )
        audit_record(
            action=Action.EXPIRED,
            actor=actor,
            connection=connection,
            detail={"message": connection.error_message},
        )
    logger.info("connection %s (%s) expired: sign in again", connection.pk, connection.provider_id)
    return connection


@sensitive_variables("credential", "values")
def connection_tokens_refreshed(
    *, connection_id: int, holder: int, credential: OAuthCredential
) -> bool:
    """Tokens that the holder project's OpenCode refreshed (read back from its auth.json)
    become the connection's: stored encrypted, audited, and the user's other projects
    signalled (``oauth_tokens_refreshed``) so they follow. False, storing nothing, when
    ``holder`` no longer holds the connection, the entry is a follower's, or it is not
    newer than the stored tokens (e.g. a holder not yet given a new sign-in's tokens)."""
    if not isinstance(credential, OAuthCredential) or not credential.access:
        return False
    if credential.refresh in ("", FOLLOWER_REFRESH):
        return False
    if any(
        len(token) > MAX_TOKEN_LENGTH or not token.isprintable() or not token.isascii()
        for token in (credential.access, credential.refresh)
    ):
        return False  # not a token (the file is written where the agent runs)
    values = credential_fields(credential)
    with transaction.atomic():
        connection = (
            ProviderConnection.objects.select_for_update()
            .filter(pk=connection_id, auth_type=AuthType.OAUTH, oauth_token_holder=holder)
            .first()
        )
        if connection is None or connection.undecryptable_fields():
            return False
        same = (str(connection.oauth_access_token or ""), str(connection.oauth_refresh_token or ""))
        if same == (credential.access, credential.refresh):
            return False
        stored, expires = connection.oauth_expires_at, values["oauth_expires_at"]
        if stored is not None and (expires is None or expires <= stored):
            return False
        account = values["oauth_account_id"]
        if connection.oauth_account_id and account and account != connection.oauth_account_id:
            logger.warning("connection %s: read-back tokens of another account", connection.pk)
            return False
        connection.oauth_access_token = values["oauth_access_token"]
        connection.oauth_refresh_token = values["oauth_refresh_token"]
        connection.oauth_expires_at = expires
        if values["oauth_account_id"]:
            connection.oauth_account_id = values["oauth_account_id"]
        connection.refresh_key_hint()
        connection.save(
            update_fields=[
                "oauth_access_token",
                "oauth_refresh_token",
                "oauth_expires_at",
                "oauth_account_id",
                "key_hint",
                "updated_at",
            ]
        )
        audit_record(
            action=Action.REFRESHED,
            actor_name="doce (read back from the holder project)",
            connection=connection,
            project_id=holder,
            detail={"expires_at": expires.isoformat() if expires else None},
        )
    send_on_commit(
        oauth_tokens_refreshed,
        user_id=connection.user_id,
        provider_id=connection.provider_id,
        holder=holder,
    )
    return True


def oauth_holder_move(*, connection_id: int, old: int | None, new: int | None) -> bool:
    """Hand the refresh token from project ``old`` to ``new`` (None: to nobody; the next
    project given the credential takes it). Only if ``old`` still holds it."""
    return bool(
        ProviderConnection.objects.filter(pk=connection_id, oauth_token_holder=old).update(
            oauth_token_holder=new
        )
    )


def connection_revalidate(
    *, connection: ProviderConnection, actor: AbstractBaseUser | None = None
) -> ProviderConnection:
    """Check what can be checked without asking the provider: every secret decrypts and
    the auth type's secrets are present; an OAuth token past its expiry is ``expired``.

    Sets ``status``, ``error_message`` and ``last_validated_at`` and writes an audit
    event. A revoked connection stays revoked. The provider-API check (a cheap
    authenticated call per provider) plugs in here with the key validation work
    (issue 5): call it after these local checks pass.
    """
    now = timezone.now()
    problem = ""
    if connection.undecryptable_fields():
        problem = UNDECRYPTABLE_MESSAGE
    elif missing := connection.missing_secrets(keyless_custom_ok=True):
        problem = f"no {missing[0].replace('_', ' ')} is stored"
    elif connection.base_url and (
        refused := endpoint_problem(connection.base_url, trusted=connection.endpoint_trusted)
    ):
        problem = f"{refused} Change its base URL."
    if connection.status != Status.REVOKED:
        if problem:
            connection.status = Status.ERROR
        elif connection.status == Status.EXPIRED or (
            connection.oauth_expires_at
            and connection.oauth_expires_at <= now
            and not connection.oauth_refresh_token
        ):
            # A passed expiry alone is not "expired": OpenCode refreshes the token.
            connection.status = Status.EXPIRED
        else:
            connection.status = Status.CONNECTED
        if connection.status != Status.EXPIRED:
            connection.error_message = problem
    connection.last_validated_at = now
    if not problem:
        connection.refresh_key_hint()  # e.g. blank while the key could not be decrypted
    with transaction.atomic():
        connection.save(
            update_fields=["status", "error_message", "last_validated_at", "key_hint", "updated_at"]
        )
        audit_record(
            action=Action.VALIDATION_FAILED if problem else Action.VALIDATED,
            actor=actor,
            connection=connection,
            detail={"status": connection.status, "message": problem, "checks": "local"},
        )
    return connection


def connections_recover_undecryptable() -> int:
    """Connections marked "cannot decrypt" whose secrets open again (the right key is
    configured once more) go back to ``connected`` by themselves; the number recovered."""
    recovered = 0
    for connection in ProviderConnection.objects.filter(
        status=Status.ERROR, error_message=UNDECRYPTABLE_MESSAGE
    ):
        if not connection.undecryptable_fields() and connection_mark_recovered(connection):
            connection.refresh_key_hint()  # blank while the key could not be read
            ProviderConnection.objects.filter(pk=connection.pk).update(key_hint=connection.key_hint)
            recovered += 1
    if recovered:
        logger.info("%d connection(s) decrypt again", recovered)
    return recovered


def connections_expire_oauth(*, now: datetime | None = None) -> int:
    """Mark ``connected`` OAuth connections ``expired`` whose access token is past its
    expiry and that have no refresh token to get another; the number marked. A token
    with a refresh token is not expired: OpenCode refreshes it (a refresh that fails is
    marked by ``connection_mark_error``). Locked and re-checked so a token refreshed
    meanwhile is not marked."""
    now = now or timezone.now()
    with transaction.atomic():
        due = list(
            ProviderConnection.objects.select_for_update()
            .filter(
                auth_type=AuthType.OAUTH,
                status=Status.CONNECTED,
                oauth_expires_at__lte=now,
                oauth_refresh_token__isnull=True,
            )
            .values_list("pk", "user_id", "provider_id")
        )
        if not due:
            return 0
        ProviderConnection.objects.filter(pk__in=[pk for pk, _, _ in due]).update(
            status=Status.EXPIRED,
            error_message=f"{SIGN_IN_AGAIN}: the access token expired and there is no "
            "refresh token to renew it.",
            oauth_token_holder=None,
            updated_at=now,
        )
        AuditEvent.objects.bulk_create(
            AuditEvent(
                action=Action.EXPIRED,
                user_id=user_id,
                provider_id=provider_id,
                connection_id=pk,
                actor_name="task providers.expire_oauth_connections",
            )
            for pk, user_id, provider_id in due
        )
    logger.info("marked %d OAuth connection(s) expired", len(due))
    return len(due)


# --- validation -----------------------------------------------------------------------


@sensitive_variables()
def _apply(connection: ProviderConnection, **values) -> None:
    """Set ``values`` on ``connection``, drop secrets its auth type does not use, refresh
    the hint, and validate; raises ValidationError keyed by field. ``secret_options`` is
    given as a mapping and stored as its JSON (None when empty)."""
    if isinstance(values.get("secret_options"), dict):
        secret = values["secret_options"]
        values["secret_options"] = json.dumps(secret, sort_keys=True) if secret else None
    for key, value in values.items():
        if key in ProviderConnection.SECRET_FIELDS and isinstance(value, str):
            value = value.strip() or None
        elif isinstance(value, str):
            value = value.strip()
        setattr(connection, key, value)
    used = ProviderConnection.SECRETS_BY_AUTH_TYPE.get(connection.auth_type, ())
    for key in ProviderConnection.AUTH_SECRET_FIELDS:
        if key not in used:
            setattr(connection, key, None)
    if connection.auth_type != AuthType.OAUTH:
        connection.oauth_expires_at = None
        connection.oauth_account_id = connection.oauth_enterprise_url = ""
    connection_validate(connection=connection)
    connection.refresh_key_hint()


def connection_validate(*, connection: ProviderConnection) -> None:
    """ValidationError (keyed by field) when the connection's values do not fit together:
    the services call it before saving; forms that edit a connection call it in clean."""
    errors = _validation_errors(connection)
    if errors:
        raise ValidationError(errors)


@sensitive_variables()
def _validation_errors(connection: ProviderConnection) -> dict[str, str]:
    errors: dict[str, str] = {}
    try:
        connection.full_clean(
            exclude=["user", "key_hint", *ProviderConnection.SECRET_FIELDS],
            validate_unique=False,
            validate_constraints=False,
        )
    except ValidationError as exc:
        errors.update({field: " ".join(messages) for field, messages in exc.message_dict.items()})
    for key in connection.missing_secrets(keyless_custom_ok=True):
        errors[key] = f"This {connection.get_auth_type_display()} connection needs a value."
    errors.update(
        provider_options.stored_problems(
            connection.provider_id,
            custom=connection.is_custom,
            options=connection.options,
            secrets=connection.secret_option_values,
        )
    )
    api_key = connection.api_key
    if isinstance(api_key, str) and api_key and (problem := validation.key_problem(api_key)):
        errors["api_key"] = f"{problem}."  # an HTTP header takes printable ASCII only
    # The forms' shared rule again, for every other writer (the admin, commands).
    for field, what in (("api_key", "A key"), ("base_url", "A base URL"), ("name", "A name")):
        value = api_key if field == "api_key" else getattr(connection, field)
        if isinstance(value, str) and has_config_substitution(value):
            errors.setdefault(field, config_substitution_message(what))
    if isinstance(connection.metadata, dict) and any(
        isinstance(value, str) and has_config_substitution(value)
        for value in connection.metadata.values()
    ):
        errors["metadata"] = config_substitution_message("A sign-in value")
    if not isinstance(connection.metadata, dict) or not all(
        isinstance(key, str) and isinstance(value, str)
        for key, value in connection.metadata.items()
    ):
        errors["metadata"] = "Metadata is a mapping of prompt names to text values."
    if connection.base_url:
        try:
            URLValidator(schemes=["http", "https"])(connection.base_url)
        except ValidationError:
            errors["base_url"] = "Enter an http:// or https:// URL."
        else:
            if "@" in urlsplit(connection.base_url).netloc:
                errors["base_url"] = (
                    "Remove the user name and password from the URL: put the key in the API "
                    "key field (it is stored encrypted)."
                )
        if connection.auth_type != AuthType.API:
            errors["auth_type"] = "A custom provider connects with an API key."
        if not connection.name:
            errors["name"] = "A custom provider needs a name."
    models = connection.models
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        errors["models"] = "Models are a list of model ids."
    elif connection.base_url and not models:
        errors["models"] = "A custom provider needs at least one model id."
    return errors


def _initialize_settings(user: AbstractBaseUser, *, provider_id: str) -> None:
    """A user who connects anything is on the new system, and the first provider they
    connect becomes their preferred one (while none is set): /projects/new/ starts with
    its model."""
    _, created = UserSettings.objects.get_or_create(
        user=user,
        defaults={"provider_auth_initialized": True, "preferred_provider_id": provider_id},
    )
    if created:
        return
    UserSettings.objects.filter(user=user, provider_auth_initialized=False).update(
        provider_auth_initialized=True
    )
    UserSettings.objects.filter(user=user, preferred_provider_id="").update(
        preferred_provider_id=provider_id
    )


# --- the settings pages: connect with a key, check it, preferences, legacy key -----------


@sensitive_variables()
def connection_set_api_key(
    *,
    user: AbstractBaseUser,
    provider_id: str,
    api_key: str,
    metadata: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    secret_options: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
) -> tuple[ProviderConnection, bool]:
    """Connect ``provider_id`` with an API key, or replace the key of the user's existing
    connection (the Edit form, and the second request of a double submit). Returns the
    connection and whether it was created. The same key again changes nothing (no event,
    no re-injection) unless the connection is not ``connected``. ``options`` /
    ``secret_options`` None leave the stored ones; an empty ``api_key`` keeps the stored
    key (a provider whose options may stand in for a key: ``providers.options``)."""
    existing = connection_for(user=user, provider_id=provider_id)
    if existing is None:
        try:
            connection = connection_create(
                user=user,
                provider_id=provider_id,
                api_key=api_key or None,
                metadata=metadata or {},
                options=options,
                secret_options=secret_options,
                actor=actor,
            )
            return connection, True
        except ValidationError as error:
            existing = connection_for(user=user, provider_id=provider_id)
            if existing is None or set(error.message_dict) != {"provider_id"}:
                raise
    keep_key = not api_key.strip() and existing.auth_type == AuthType.API
    unchanged = (
        existing.auth_type == AuthType.API
        and not existing.undecryptable_fields()
        and (keep_key or str(existing.api_key or "") == api_key.strip())
        and (metadata is None or dict(existing.metadata or {}) == metadata)
        and (options is None or dict(existing.options or {}) == options)
        and (secret_options is None or existing.secret_option_values == secret_options)
        and existing.status == Status.CONNECTED
    )
    if unchanged:
        return existing, False
    changes: dict[str, Any] = {"auth_type": AuthType.API}
    if not keep_key:
        changes["api_key"] = api_key
    for key, value in (
        ("metadata", metadata),
        ("options", options),
        ("secret_options", secret_options),
    ):
        if value is not None:
            changes[key] = value
    return connection_update(connection=existing, actor=actor, **changes), False


@sensitive_variables()
def connection_connect_api_key(
    *,
    user: AbstractBaseUser,
    provider_id: str,
    api_key: str,
    metadata: dict[str, str] | None = None,
    options: dict[str, Any] | None = None,
    secret_options: dict[str, Any] | None = None,
    actor: AbstractBaseUser | None = None,
) -> tuple[ProviderConnection, bool, validation.KeyCheck]:
    """The API-key form: check the key with the provider, save it (a new connection or
    a new key for the existing one, a custom endpoint's included) with the provider's
    options, record the check. ValidationError on ``api_key`` when the provider rejects
    it (nothing saved). An empty ``api_key`` (a provider whose options may stand in for
    it) is not checked. Returns the connection, whether it was created, and the check."""
    existing = connection_for(user=user, provider_id=provider_id)
    base_url = existing.base_url if existing is not None and existing.is_custom else ""
    if api_key:
        check = key_checked(
            user=user,
            provider_id=provider_id,
            api_key=api_key,
            base_url=base_url,
            connection=existing,
            actor=actor,
        )
    else:
        check = validation.KeyCheck(validation.UNCHECKED)
    connection, created = connection_set_api_key(
        user=user,
        provider_id=provider_id,
        api_key=api_key,
        metadata=None if base_url else metadata,
        options=None if base_url else options,
        secret_options=None if base_url else secret_options,
        actor=actor,
    )
    connection = connection_record_check(connection=connection, check=check, actor=actor)
    return connection, created, check


@sensitive_variables()
def endpoint_save(
    *,
    user: AbstractBaseUser,
    connection: ProviderConnection | None,
    provider_id: str,
    name: str,
    base_url: str,
    models: list[str],
    api_key: str = "",
    headers: dict[str, str] | None = None,
    prices: dict[str, str] | None = None,
    actor: AbstractBaseUser | None = None,
) -> tuple[ProviderConnection, bool, validation.KeyCheck]:
    """The custom-endpoint form: check the key against ``{base_url}/models``, create the
    endpoint (``connection`` None) or change it, record the check. An empty ``api_key``
    keeps the stored one on an edit; empty ``models`` take the list the endpoint's
    ``/models`` gave. ValidationError on ``api_key`` when the endpoint rejects it, on
    ``models`` when there are none either way (nothing saved)."""
    # A stored key and stored header values go only where they were typed for: not to a
    # base URL of another scheme, host or port (connection_update forgets them then).
    stays = connection is not None and not origins.origin_changed(connection.base_url, base_url)
    api_key_for_check = api_key
    if not models and not api_key and stays and not connection.undecryptable_fields():
        api_key_for_check = str(connection.api_key or "")  # the stored key lists the models
    if headers is None and stays:
        headers_for_check = _endpoint_headers(connection)
    else:
        headers_for_check = headers or {}
    check = key_checked(
        user=user,
        provider_id=provider_id,
        api_key=api_key_for_check,
        base_url=base_url,
        connection=connection,
        actor=actor,
        list_models=not models,
        headers=headers_for_check,
    )
    if not models:
        models = list(check.models or ())
        if not models:
            raise ValidationError({"models": _no_models_message(check)})
    fields: dict[str, Any] = {"name": name, "base_url": base_url, "models": models}
    if prices is not None:
        fields["prices"] = prices
    if headers is not None:  # None: leave the stored ones
        fields["secret_options"] = {provider_options.HEADERS: headers} if headers else {}
    created = connection is None
    if connection is None:
        try:
            connection = connection_create(
                user=user, provider_id=provider_id, api_key=api_key or None, actor=actor, **fields
            )
        except ValidationError as error:
            # Lost a race with the same form's other submit: the endpoint is saved, which
            # is what this request asked for too.
            existing = connection_for(user=user, provider_id=provider_id)
            if (
                existing is None
                or set(error.message_dict) != {"provider_id"}
                or not endpoint_resubmitted(
                    existing, api_key=api_key, name=name, base_url=base_url, models=models
                )
            ):
                raise
            return existing, True, check
    else:
        if api_key:
            fields["api_key"] = api_key
        stored = connection.secret_option_values.get(provider_options.HEADERS) or {}
        if "secret_options" in fields and headers == stored and stays:
            del fields["secret_options"]  # unchanged: no new-secret event, no re-injection
        connection = connection_update(connection=connection, actor=actor, **fields)
    connection = connection_record_check(connection=connection, check=check, actor=actor)
    return connection, created, check


def _endpoint_headers(connection: ProviderConnection) -> dict[str, str]:
    """A custom endpoint's extra headers: the key check sends them as OpenCode does."""
    return dict(connection.secret_option_values.get(provider_options.HEADERS) or {})


def _no_models_message(check: validation.KeyCheck) -> str:
    if not validation.checks_enabled():
        return "Enter at least one model id."
    reason = check.message or "its answer had no model ids"
    return f"Enter at least one model id: the endpoint did not list its models ({reason})."


@sensitive_variables()
def endpoint_rescan(
    *, connection: ProviderConnection, actor: AbstractBaseUser | None = None
) -> tuple[ProviderConnection, validation.KeyCheck]:
    """ "Re-scan models": ask the custom endpoint's ``/models`` (with its stored key) and
    make its list the connection's models (audited; running projects follow). When it
    lists none, nothing changes and the check says why. The check is recorded as Test
    records it (a rejected key marks the connection ``error``)."""
    if connection.undecryptable_fields():
        return connection, validation.KeyCheck(validation.UNVERIFIED, UNDECRYPTABLE_MESSAGE)
    check = validation.key_check(
        provider_id=connection.provider_id,
        api_key=str(connection.api_key or ""),
        base_url=connection.base_url,
        list_models=True,
        headers=_endpoint_headers(connection),
        trusted=connection.endpoint_trusted,
    )
    if check.models and list(check.models) != list(connection.models or []):
        connection = connection_update(
            connection=connection, actor=actor, models=list(check.models)
        )
    if connection.api_key:
        connection = connection_record_check(connection=connection, check=check, actor=actor)
    return connection, check


@sensitive_variables()
def endpoint_resubmitted(
    connection: ProviderConnection,
    *,
    name: str | None,
    base_url: str | None,
    models: list[str] | None,
    api_key: str,
) -> bool:
    """Is ``connection`` the custom endpoint these values describe, created moments ago
    (``DOUBLE_SUBMIT_WINDOW``)? Then a second submit of the same form is answered as the
    first one was instead of "already connected"."""
    return (
        connection.is_custom
        and connection.created_at >= timezone.now() - DOUBLE_SUBMIT_WINDOW
        and connection.name == name
        and connection.base_url == base_url
        and (not models or list(connection.models or []) == models)  # empty: discovered
        and str(connection.api_key or "") == (api_key or "")
    )


@sensitive_variables()
def key_checked(
    *,
    user: AbstractBaseUser | None,
    provider_id: str,
    api_key: str,
    base_url: str,
    connection: ProviderConnection | None,
    actor: AbstractBaseUser | None,
    list_models: bool = False,
    headers: dict[str, str] | None = None,
) -> validation.KeyCheck:
    """Ask the provider; a rejected key is audited and refused (ValidationError). A team
    key (``user`` None) is checked as its staff ``actor`` (or the operator's command,
    ``actor`` None) typed it."""
    check = validation.key_check(
        provider_id=provider_id,
        api_key=api_key,
        base_url=base_url,
        list_models=list_models,
        headers=headers,
        trusted=user.is_staff if user is not None else actor is None or actor.is_staff,
    )
    if check.outcome == validation.REJECTED:
        audit_record(
            action=Action.VALIDATION_FAILED,
            actor=actor or user,
            user=user,
            provider_id=provider_id,
            connection=connection,
            detail={"checks": "provider", "outcome": check.outcome, "message": check.message},
        )
        raise ValidationError({"api_key": check.message})
    return check


def connection_record_check(
    *,
    connection: ProviderConnection,
    check: validation.KeyCheck,
    actor: AbstractBaseUser | None = None,
) -> ProviderConnection:
    """Record what the provider said of the key (a ``providers.validation.KeyCheck``):
    ``rejected`` marks the connection ``error``; ``valid`` clears any note and stamps
    ``last_validated_at``; ``unverified`` keeps it connected with a "Not verified" note
    in ``error_message``."""
    if check.outcome == validation.REJECTED:
        return connection_mark_error(connection=connection, message=check.message, actor=actor)
    if check.outcome == validation.UNCHECKED:
        return connection
    now = timezone.now()
    if check.outcome == validation.VALID:
        connection.last_validated_at = now
        connection.error_message = ""
        action = Action.VALIDATED
    else:
        connection.error_message = redact(
            f"Not verified: {check.message}. The key is saved; use Test to check it again."
        )[:2000]
        action = Action.VALIDATION_FAILED
    if connection.status == Status.ERROR and check.outcome == validation.VALID:
        connection.status = Status.CONNECTED
    with transaction.atomic():
        connection.save(
            update_fields=["status", "error_message", "last_validated_at", "updated_at"]
        )
        audit_record(
            action=action,
            actor=actor,
            connection=connection,
            detail={"checks": "provider", "outcome": check.outcome, "message": check.message},
        )
    return connection


@sensitive_variables()
def connection_verify(
    *, connection: ProviderConnection, actor: AbstractBaseUser | None = None
) -> tuple[ProviderConnection, validation.KeyCheck | None]:
    """The "Test" button: ``connection_revalidate``'s local checks, then, when they pass,
    the provider-API check of an API key (``providers.validation``). Returns the
    connection and the provider's ``KeyCheck`` (None when it was not asked)."""
    connection = connection_revalidate(connection=connection, actor=actor)
    if connection.status in (Status.ERROR, Status.REVOKED):
        return connection, None
    if connection.auth_type != AuthType.API or not connection.api_key:
        return connection, None
    check = validation.key_check(
        provider_id=connection.provider_id,
        api_key=str(connection.api_key),
        base_url=connection.base_url,
        headers=_endpoint_headers(connection),
        trusted=connection.endpoint_trusted,
    )
    return connection_record_check(connection=connection, check=check, actor=actor), check


def preferences_update(
    *, user: AbstractBaseUser, preferred_provider_id: str, default_model: str
) -> UserSettings:
    """Set the user's preferred provider and default model ("provider/model")."""
    row, _ = UserSettings.objects.get_or_create(user=user)
    row.preferred_provider_id = preferred_provider_id or ""
    row.default_model = default_model or ""
    row.save(update_fields=["preferred_provider_id", "default_model", "updated_at"])
    return row
