"""A table of provider connections per status, and OAuth tokens about to expire."""

from __future__ import annotations

from datetime import UTC, timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from providers.selectors import (
    connection_status_counts,
    legacy_keys_pending,
    oauth_connections_expiring,
)


class Command(BaseCommand):
    help = (
        "Print connections per status, legacy keys not yet migrated, and OAuth tokens that "
        "have expired or expire within an hour. Decrypts nothing (see "
        "`rotate_encryption_keys --dry-run` for values the keys cannot open)."
    )

    def handle(self, *args, **options):
        counts = connection_status_counts()
        self.stdout.write(f"{'status':<12}{'connections':>12}")
        for status, count in counts.items():
            self.stdout.write(f"{status:<12}{count:>12}")
        self.stdout.write(f"{'total':<12}{sum(counts.values()):>12}")

        pending = legacy_keys_pending().count()
        self.stdout.write(
            f"\nLegacy OpenRouter keys not yet migrated: {pending}"
            + (" (run `manage.py migrate_legacy_keys`)" if pending else "")
        )

        now = timezone.now()
        expiring = list(oauth_connections_expiring(within=timedelta(hours=1), now=now))
        self.stdout.write(f"\nOAuth tokens expired or expiring within an hour: {len(expiring)}")
        if not expiring:
            return
        self.stdout.write(f"{'user':<20}{'provider':<24}{'expires (UTC)':<22}{'status':<11}when")
        for connection in expiring:
            expires = connection.oauth_expires_at
            minutes = round((expires - now).total_seconds() / 60)
            when = f"in {minutes} min" if minutes > 0 else f"{-minutes} min ago"
            owner = connection.user.get_username() if connection.user else "(team key)"
            self.stdout.write(
                f"{owner:<20}{connection.provider_id:<24}"
                f"{expires.astimezone(UTC):%Y-%m-%d %H:%M:%S}   "
                f"{connection.status:<11}{when}"
            )
