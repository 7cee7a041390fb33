"""Moving the old system's OpenRouter keys (``user_settings.openrouter_api_key``) into
``openrouter`` provider connections.

``migrate_legacy_rows`` is shared by data migration 0004 (with historical models) and by
``manage.py migrate_legacy_keys`` (with the real ones), so it uses only model fields that
exist at migration 0004 and ``doce.keyring``: no model methods, no services.

The legacy value is never deleted or blanked: the old system's fallback keeps reading it
until every user has moved. A row with ``migration_completed_at`` set is done and is
skipped, so re-running creates nothing twice, and a user who later disconnects the
migrated connection does not get it back.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.db.models import ExpressionWrapper, F, Value
from django.utils import timezone

from doce import keyring
from doce.encrypted_fields import UNDECRYPTABLE_MESSAGE, scrub_sqlite
from providers.models import AuditEvent, ProviderConnection, UserSettings, key_hint

LEGACY_PROVIDER_ID = "openrouter"
BATCH_SIZE = 500


@dataclass(frozen=True)
class LegacyOutcome:
    user_id: int
    username: str
    result: str  # created | kept_existing | undecryptable
    encrypted_plaintext: bool = False  # the column held plaintext (a restored backup)

    def describe(self, dry_run: bool) -> str:
        if self.result == "undecryptable":
            return f"{self.username}: skipped, {UNDECRYPTABLE_MESSAGE}"
        if self.result == "created":
            text = "would create" if dry_run else "created"
            text += " an openrouter connection"
        else:
            text = "would keep" if dry_run else "kept"
            text += " the existing openrouter connection"
        if self.encrypted_plaintext:
            text += "; would encrypt" if dry_run else "; encrypted"
            text += " the plaintext legacy value in place"
        return f"{self.username}: {text}"


def migrate_legacy_rows(
    *,
    UserSettings,
    ProviderConnection,
    AuditEvent,
    using: str,
    dry_run: bool = False,
    user_ids: list[int] | None = None,
    actor_name: str,
) -> list[LegacyOutcome]:
    """Migrate every pending legacy key (optionally only ``user_ids``'s); see module doc."""
    outcomes: list[LegacyOutcome] = []
    pending = (
        UserSettings.objects.using(using)
        .filter(openrouter_api_key__isnull=False, migration_completed_at__isnull=True)
        .exclude(openrouter_api_key="")
        .order_by("pk")
    )
    if user_ids is not None:
        pending = pending.filter(pk__in=user_ids)
    last_pk = None
    while True:
        batch = pending if last_pk is None else pending.filter(pk__gt=last_pk)
        rows = list(
            batch.annotate(
                raw=ExpressionWrapper(F("openrouter_api_key"), output_field=models.TextField())
            ).values_list("pk", "user__username", "raw")[:BATCH_SIZE]
        )
        if not rows:
            return outcomes
        last_pk = rows[-1][0]
        with transaction.atomic(using=using):
            for user_id, username, raw in rows:
                outcome = _migrate_one(
                    user_id,
                    username,
                    raw,
                    UserSettings,
                    ProviderConnection,
                    AuditEvent,
                    using=using,
                    dry_run=dry_run,
                    actor_name=actor_name,
                )
                outcomes.append(outcome)


def _migrate_one(
    user_id,
    username,
    raw,
    UserSettings,
    ProviderConnection,
    AuditEvent,
    *,
    using,
    dry_run,
    actor_name,
) -> LegacyOutcome:
    plaintext_at_rest = not keyring.looks_encrypted(raw)
    if plaintext_at_rest:
        api_key = raw
    else:
        try:
            api_key = keyring.decrypt(raw)
        except keyring.UndecryptableError:
            return LegacyOutcome(user_id, username, "undecryptable")
    existing = (
        ProviderConnection.objects.using(using)
        .filter(user_id=user_id, provider_id=LEGACY_PROVIDER_ID)
        .values_list("pk", flat=True)
        .first()
    )
    result = "kept_existing" if existing else "created"
    if dry_run:
        return LegacyOutcome(user_id, username, result, plaintext_at_rest)

    settings_rows = UserSettings.objects.using(using).filter(pk=user_id)
    if plaintext_at_rest:
        # Written as an expression so the value goes to the column as it is: this code
        # must not depend on what the field class does.
        settings_rows.update(
            openrouter_api_key=Value(keyring.encrypt(api_key), output_field=models.TextField())
        )
    if existing is None:
        connection = ProviderConnection.objects.using(using).create(
            user_id=user_id,
            provider_id=LEGACY_PROVIDER_ID,
            auth_type="api",
            api_key=api_key,
            key_hint=key_hint(api_key),
            status="connected",
        )
        connection_id = connection.pk
    else:
        connection_id = existing
    now = timezone.now()
    settings_rows.update(
        provider_auth_initialized=True,
        migration_completed_at=now,
        preferred_provider_id=models.Case(
            models.When(preferred_provider_id="", then=Value(LEGACY_PROVIDER_ID)),
            default=F("preferred_provider_id"),
        ),
    )
    AuditEvent.objects.using(using).create(
        action="migrated",
        actor_name=actor_name,
        user_id=user_id,
        provider_id=LEGACY_PROVIDER_ID,
        connection_id=connection_id,
        detail={"result": result, "encrypted_plaintext": plaintext_at_rest},
    )
    return LegacyOutcome(user_id, username, result, plaintext_at_rest)


def unmigrate_legacy_rows(*, UserSettings, ProviderConnection, using: str) -> None:
    """Undo ``migrate_legacy_rows``: delete the openrouter connections it made that still
    hold exactly the legacy key (a key changed since then is the user's, and is kept) and
    clear the migration flags. The legacy value was never touched."""
    done = UserSettings.objects.using(using).filter(migration_completed_at__isnull=False)
    for user_id, raw in done.annotate(
        raw=ExpressionWrapper(F("openrouter_api_key"), output_field=models.TextField())
    ).values_list("pk", "raw"):
        connection = (
            ProviderConnection.objects.using(using)
            .filter(user_id=user_id, provider_id=LEGACY_PROVIDER_ID, auth_type="api", base_url="")
            .annotate(raw=ExpressionWrapper(F("api_key"), output_field=models.TextField()))
            .values_list("pk", "raw")
            .first()
        )
        if raw and connection and connection[1]:
            try:
                same = keyring.decrypt(connection[1]) == keyring.decrypt(raw)
            except keyring.UndecryptableError:
                same = False
            if same:
                ProviderConnection.objects.using(using).filter(pk=connection[0]).delete()
    done.update(provider_auth_initialized=False, migration_completed_at=None)


def legacy_keys_migrate(
    *,
    actor_name: str,
    dry_run: bool = False,
    username: str | None = None,
    user_ids: list[int] | None = None,
) -> list[LegacyOutcome]:
    """Data migration 0004's work, with the real models: for rows that appear later (a
    restored backup; ``manage.py migrate_legacy_keys``), or for one user (the banner's
    "migrate" button, ``user_ids=[user.pk]``)."""
    if username is not None:
        user_ids = list(
            get_user_model().objects.filter(username=username).values_list("pk", flat=True)
        )
    using = UserSettings.objects.db
    outcomes = migrate_legacy_rows(
        UserSettings=UserSettings,
        ProviderConnection=ProviderConnection,
        AuditEvent=AuditEvent,
        using=using,
        dry_run=dry_run,
        user_ids=user_ids,
        actor_name=actor_name,
    )
    if not dry_run and any(outcome.encrypted_plaintext for outcome in outcomes):
        scrub_sqlite(using)  # a no-op inside a transaction
    return outcomes
