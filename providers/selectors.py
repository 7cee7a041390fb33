"""Reads about provider connections that several places share (pages, commands, admin).

Loading a row never raises, whatever the keys: an undecryptable value is a marker.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Count, Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from doce.inputs import DOUBLE_SUBMIT_WINDOW
from providers.legacy import LEGACY_PROVIDER_ID
from providers.models import AuditEvent, OAuthFlow, ProviderConnection, UserSettings
from providers.organisations.selectors import organisation_provider_ids


def connections_for_user(*, user: AbstractBaseUser | int) -> QuerySet[ProviderConnection]:
    """The user's connections, one query. Pages show ``key_hint``, ``effective_status``
    and ``effective_error_message``: those say ``error`` / "cannot decrypt: ..." as soon
    as the keys stop opening a secret, before anything has recorded it. (The secrets are
    loaded for that check, a few microseconds each; never render them.)"""
    return ProviderConnection.objects.filter(user_id=getattr(user, "pk", user))


def connection_for(*, user: AbstractBaseUser | int, provider_id: str) -> ProviderConnection | None:
    """The user's *own* connection to ``provider_id``, or None (one per user and
    provider): what the user may edit. What a project uses is ``connection_in_use``."""
    return ProviderConnection.objects.filter(
        user_id=getattr(user, "pk", user), provider_id=provider_id
    ).first()


def shared_connections_granted(*, user: AbstractBaseUser | int) -> QuerySet[ProviderConnection]:
    """The team keys ``user`` may use: shared with everyone, with the user, or with a
    group the user is in."""
    user_id = getattr(user, "pk", user)
    through_users = ProviderConnection.shared_with_users.through.objects.filter(user_id=user_id)
    through_groups = ProviderConnection.shared_with_groups.through.objects.filter(
        group__user__id=user_id
    )
    return ProviderConnection.objects.filter(user__isnull=True).filter(
        Q(shared_with_all=True)
        | Q(pk__in=through_users.values("providerconnection_id"))
        | Q(pk__in=through_groups.values("providerconnection_id"))
    )


def shared_connections() -> QuerySet[ProviderConnection]:
    """Every team key (staff pages, the admin, ``manage.py shared_connection``)."""
    return ProviderConnection.objects.filter(user__isnull=True)


def connections_in_use(*, user: AbstractBaseUser | int) -> QuerySet[ProviderConnection]:
    """The one rule of which credential a project of ``user`` uses, per provider: the
    user's own connection first, else a team key granted to the user (at most one of
    each per provider, so at most one row per provider here)."""
    user_id = getattr(user, "pk", user)
    own = ProviderConnection.objects.filter(user_id=user_id)
    granted = shared_connections_granted(user=user_id).exclude(
        provider_id__in=own.values("provider_id")
    )
    return ProviderConnection.objects.filter(Q(user_id=user_id) | Q(pk__in=granted.values("pk")))


def connection_in_use(
    *, user: AbstractBaseUser | int, provider_id: str
) -> ProviderConnection | None:
    """The connection a project of ``user`` on ``provider_id`` uses (``connections_in_use``),
    or None."""
    return (
        connections_in_use(user=user)
        .filter(provider_id=provider_id)
        .order_by("user_id")  # own before shared, should both ever be there
        .first()
    )


def credential_label(connection: ProviderConnection | None) -> str:
    """What pages say of whose key pays: "your key" or "team key: <name>"."""
    if connection is None:
        return ""
    if connection.is_shared:
        return f"team key: {connection.name or connection.provider_id}"
    return "your key"


def custom_endpoints(*, user: AbstractBaseUser | int) -> QuerySet[ProviderConnection]:
    """The custom OpenAI-compatible endpoints (connections with a base URL) a project of
    ``user`` may use: their own and the team's (``connections_in_use``)."""
    return connections_in_use(user=user).exclude(base_url="")


def usable_provider_ids(*, user: AbstractBaseUser | int, organisations: bool = True) -> set[str]:
    """Providers the user can run a project with: connections in use that are not
    revoked (team keys included), plus the legacy OpenRouter key while it has not been
    migrated, plus (``organisations``: a caller that reads them itself says False) the
    providers of the organisations the user has a token for."""
    user_id = getattr(user, "pk", user)
    providers = set(
        connections_in_use(user=user_id)
        .exclude(status=ProviderConnection.Status.REVOKED)
        .values_list("provider_id", flat=True)
    )
    if legacy_keys_pending().filter(user_id=user_id).exists():
        providers.add(LEGACY_PROVIDER_ID)
    if organisations:
        providers |= organisation_provider_ids(user=user_id)  # providers.organisations
    return providers


def user_settings_for(*, user: AbstractBaseUser | int) -> UserSettings | None:
    """The user's settings row (or None), with ``legacy_pending`` (see
    ``legacy_keys_pending``) in the same query."""
    pending = legacy_keys_pending().filter(pk=OuterRef("pk"))
    return (
        UserSettings.objects.filter(user_id=getattr(user, "pk", user))
        .annotate(legacy_pending=Exists(pending))
        .first()
    )


def connection_status_counts() -> dict[str, int]:
    """Connections per status, every status present (zeros included)."""
    counts = dict.fromkeys(ProviderConnection.Status.values, 0)
    for row in ProviderConnection.objects.values("status").annotate(n=Count("pk")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def oauth_connections_expiring(
    *, within: timedelta = timedelta(hours=1), now: datetime | None = None
) -> QuerySet[ProviderConnection]:
    """OAuth connections (not revoked) whose token has expired or expires within ``within``,
    soonest first."""
    now = now or timezone.now()
    return (
        ProviderConnection.objects.filter(
            auth_type=ProviderConnection.AuthType.OAUTH, oauth_expires_at__lte=now + within
        )
        .exclude(status=ProviderConnection.Status.REVOKED)
        .select_related("user")
        .defer(*ProviderConnection.SECRET_FIELDS)
        .order_by("oauth_expires_at", "pk")
    )


def legacy_keys_pending() -> QuerySet[UserSettings]:
    """Users whose legacy OpenRouter key has not been moved into a connection: the one
    definition of "legacy key not yet migrated" (data migration 0004 repeats it on
    historical models, which cannot call this)."""
    return UserSettings.objects.filter(
        openrouter_api_key__isnull=False, migration_completed_at__isnull=True
    ).exclude(openrouter_api_key="")


def recently_disconnected(user, provider_id: str) -> bool:
    """Did ``user`` disconnect ``provider_id`` within the double-submit window? (A
    second Disconnect of the same click then answers what the first one did.)"""
    return AuditEvent.objects.filter(
        user=user,
        actor=user,
        provider_id=provider_id,
        action=AuditEvent.Action.DISCONNECTED,
        created_at__gte=timezone.now() - DOUBLE_SUBMIT_WINDOW,
    ).exists()


def recent_flow(user, provider_id: str, method: int, inputs: dict) -> OAuthFlow | None:
    """The sign-in ``user`` started with the same method and inputs within the
    double-submit window, still going (a double submit shows that one)."""
    for flow in OAuthFlow.objects.filter(
        user=user,
        provider_id=provider_id,
        method=method,
        state__in=OAuthFlow.ACTIVE_STATES,
        created_at__gte=timezone.now() - DOUBLE_SUBMIT_WINDOW,
    ):
        if flow.inputs == inputs:
            return flow
    return None
