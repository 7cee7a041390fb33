"""Team keys: connections that staff share with users, groups or everyone.

A shared connection is a ``ProviderConnection`` without an owner (``user`` NULL, one per
provider). Its key is checked like a user's (``providers.validation``), stored like a
user's, and never shown to the users it is granted to: they see its name, its provider
and "shared by your administrator". Which credential a project uses is
``providers.selectors.connections_in_use`` (the user's own first, else a granted team
key); every change of a team key or of its grants is signalled with ``user_id`` None, and
running projects follow (``projects.propagation``): a project whose owner lost the grant
loses the key before its next prompt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.db import transaction
from django.views.decorators.debug import sensitive_variables

from doce.endpoints import endpoint_problem
from doce.inputs import config_substitution_message, has_config_substitution, has_control_characters
from providers import services, validation
from providers.audit import audit_record
from providers.catalog import catalog_entry
from providers.models import AuditEvent, ProviderConnection, validate_provider_id
from providers.selectors import shared_connections
from providers.signals import credential_changed, credential_removed, send_on_commit

logger = logging.getLogger(__name__)

Action = AuditEvent.Action


@dataclass(frozen=True)
class Grants:
    """Who may use a team key: everyone, or these users and the members of these groups."""

    everyone: bool = False
    users: tuple[AbstractBaseUser, ...] = ()
    groups: tuple[Group, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.everyone or self.users or self.groups)

    def describe(self) -> str:
        if self.everyone:
            return "everyone"
        names = [f"user {user.get_username()}" for user in self.users]
        names += [f"group {group.name}" for group in self.groups]
        return ", ".join(names) or "nobody"


def grants_from_names(
    *, users: Iterable[str] = (), groups: Iterable[str] = (), everyone: bool = False
) -> Grants:
    """Grants from user and group names (a command line); ValidationError naming every
    name that does not exist."""
    user_names = sorted({name.strip() for name in users if name.strip()})
    group_names = sorted({name.strip() for name in groups if name.strip()})
    found_users = {
        user.get_username(): user
        for user in get_user_model().objects.filter(username__in=user_names)
    }
    found_groups = {group.name: group for group in Group.objects.filter(name__in=group_names)}
    unknown = [f"user “{name}”" for name in user_names if name not in found_users]
    unknown += [f"group “{name}”" for name in group_names if name not in found_groups]
    if unknown:
        raise ValidationError(f"No such {', '.join(unknown)}.")
    return Grants(
        everyone=everyone,
        users=tuple(found_users[name] for name in user_names),
        groups=tuple(found_groups[name] for name in group_names),
    )


def grants_of(connection: ProviderConnection) -> Grants:
    return Grants(
        everyone=connection.shared_with_all,
        users=tuple(connection.shared_with_users.order_by("username")),
        groups=tuple(connection.shared_with_groups.order_by("name")),
    )


@dataclass(frozen=True)
class PreparedShare:
    """A team key that passed every check (``shared_connection_check``), ready to save.
    Holds the key: never log it or put it in a task."""

    provider_id: str
    name: str
    api_key: str = field(repr=False)
    grants: Grants
    base_url: str
    models: tuple[str, ...]
    check: validation.KeyCheck


@sensitive_variables()
def shared_connection_check(
    *,
    actor: AbstractBaseUser | None,
    provider_id: str,
    name: str,
    api_key: str,
    grants: Grants,
    base_url: str = "",
    models: list[str] | None = None,
) -> PreparedShare:
    """Everything ``shared_connection_add`` checks before it saves: ValidationError per
    field (``provider_id``, ``name``, ``base_url``, ``api_key``, ``models``, ``grants``).
    The key is checked with the provider as a user's is; a rejected one is refused."""
    provider_id = (provider_id or "").strip()
    name = (name or "").strip()
    models = [model.strip() for model in models or [] if model.strip()]
    errors: dict[str, str] = {}
    try:
        validate_provider_id(provider_id)
    except ValidationError as error:
        errors["provider_id"] = error.messages[0]
    if not name:
        errors["name"] = "Give the team key a name its users will recognise."
    elif len(name) > 100 or has_control_characters(name):
        errors["name"] = "The name is one line of at most 100 characters."
    if not base_url and "provider_id" not in errors and catalog_entry(provider_id) is None:
        errors["provider_id"] = (
            f"OpenCode does not know the provider “{provider_id}”: give a base URL for a "
            "custom OpenAI-compatible endpoint."
        )
    trusted = actor is None or actor.is_staff  # the operator's command, or staff
    if base_url and (problem := endpoint_problem(base_url, trusted=trusted)):
        errors["base_url"] = problem
    if not api_key.strip() and not base_url:
        errors["api_key"] = "A team key needs its API key."
    bad = [model for model in models if _model_problem(model)]
    if bad:
        errors["models"] = f"“{bad[0]}”: {_model_problem(bad[0])}"
    if grants.empty:
        errors["grants"] = "Say who may use it: users, groups, or everyone."
    if not errors and shared_connections().filter(provider_id=provider_id).exists():
        errors["provider_id"] = (
            f"{provider_id} already has a team key: remove it first "
            f"(manage.py shared_connection remove {provider_id})."
        )
    if errors:
        raise ValidationError(errors)
    check = validation.KeyCheck(validation.UNCHECKED)
    if api_key or base_url:
        check = services.key_checked(
            user=None,
            actor=actor,
            provider_id=provider_id,
            api_key=api_key,
            base_url=base_url,
            connection=None,
            list_models=bool(base_url) and not models,
        )
    if base_url and not models:
        models = list(check.models or ())
        if not models:
            raise ValidationError({"models": "The endpoint listed no models: give them."})
    return PreparedShare(provider_id, name, api_key, grants, base_url, tuple(models), check)


@sensitive_variables()
def shared_connection_save(
    *, prepared: PreparedShare, actor: AbstractBaseUser | None
) -> ProviderConnection:
    """Save a checked team key with its grants, and record its check."""
    with transaction.atomic():
        connection = services.connection_create(
            user=None,
            provider_id=prepared.provider_id,
            api_key=prepared.api_key or None,
            name=prepared.name,
            base_url=prepared.base_url,
            models=list(prepared.models),
            actor=actor,
        )
        _grants_store(connection, prepared.grants, actor)
    connection = services.connection_record_check(
        connection=connection, check=prepared.check, actor=actor
    )
    logger.info("team key %s shared with %s", prepared.provider_id, prepared.grants.describe())
    return connection


@sensitive_variables()
def shared_connection_add(
    *, actor: AbstractBaseUser | None, **fields
) -> tuple[ProviderConnection, validation.KeyCheck]:
    """Share a key for a provider (one OpenCode knows, or a custom OpenAI-compatible
    endpoint when ``base_url`` is given; ``fields``: those of ``shared_connection_check``).
    ``actor``: the staff member, or None for the operator's command. ValidationError,
    nothing saved, when a check fails."""
    prepared = shared_connection_check(actor=actor, **fields)
    return shared_connection_save(prepared=prepared, actor=actor), prepared.check


def _model_problem(model: str) -> str:
    if len(model) > 255:
        return "a model id has at most 255 characters."
    if has_control_characters(model) or any(char.isspace() for char in model):
        return "a model id has no spaces or control characters."
    if has_config_substitution(model):
        return config_substitution_message("A model id")
    return ""


def shared_connection_share(
    *, connection: ProviderConnection, actor: AbstractBaseUser, grants: Grants, name: str = ""
) -> ProviderConnection:
    """Turn a staff member's own connection (an OAuth sign-in, say) into the team key of
    its provider: it leaves their own connections (they may be granted it like anyone)."""
    if connection.is_shared:
        raise ValidationError("It is already a team key.")
    if grants.empty:
        raise ValidationError("Say who may use it: users, groups, or everyone.")
    if shared_connections().filter(provider_id=connection.provider_id).exists():
        raise ValidationError(f"{connection.provider_id} already has a team key.")
    owner_id = connection.user_id
    with transaction.atomic():
        connection.user = None
        connection.shared_by = actor
        connection.name = (name or connection.name or connection.provider_id).strip()[:100]
        connection.oauth_token_holder = None  # the next project given it takes the place
        connection.save(
            update_fields=["user", "shared_by", "name", "oauth_token_holder", "updated_at"]
        )
        _grants_store(connection, grants, actor)
        audit_record(
            action=Action.UPDATED,
            actor=actor,
            connection=connection,
            detail={"shared": True, "from_user": owner_id},
        )
    send_on_commit(credential_removed, user_id=owner_id, provider_id=connection.provider_id)
    return connection


def shared_connection_grants_set(
    *, connection: ProviderConnection, actor: AbstractBaseUser | None, grants: Grants
) -> None:
    """Replace who may use the team key; running projects of users who lost it lose the
    key before their next prompt."""
    with transaction.atomic():
        _grants_store(connection, grants, actor)
    send_on_commit(credential_changed, user_id=None, provider_id=connection.provider_id)


def grants_changed(*, connection: ProviderConnection, actor: AbstractBaseUser | None) -> None:
    """The grants were edited in place (the admin's form saved the many-to-many fields):
    audit and signal as ``shared_connection_grants_set`` does."""
    _grants_audit(connection, actor, grants_of(connection))
    send_on_commit(credential_changed, user_id=None, provider_id=connection.provider_id)


def shared_connection_remove(*, provider_id: str, actor: AbstractBaseUser | None) -> bool:
    """Delete the team key of ``provider_id`` (False: there is none). Projects using it
    lose it; an owner with a key of their own for the provider gets theirs."""
    connection = shared_connections().filter(provider_id=provider_id).first()
    if connection is None:
        return False
    services.connection_delete(connection=connection, actor=actor)
    return True


def _grants_store(
    connection: ProviderConnection, grants: Grants, actor: AbstractBaseUser | None
) -> None:
    connection.shared_with_all = grants.everyone
    connection.save(update_fields=["shared_with_all", "updated_at"])
    connection.shared_with_users.set(grants.users)
    connection.shared_with_groups.set(grants.groups)
    _grants_audit(connection, actor, grants)


def _grants_audit(connection, actor, grants: Grants) -> None:
    audit_record(
        action=Action.UPDATED,
        actor=actor,
        connection=connection,
        detail={"grants": grants.describe()},
    )
