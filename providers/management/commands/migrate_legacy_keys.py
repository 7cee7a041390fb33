"""Move legacy OpenRouter keys (user_settings.openrouter_api_key) into connections."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from providers.legacy import legacy_keys_migrate


class Command(BaseCommand):
    help = (
        "Move every legacy OpenRouter key not yet migrated (e.g. rows restored from a backup "
        "of the old system) into an 'openrouter' connection, as data migration "
        "providers.0004 did. The legacy value is kept. Safe to re-run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done.")
        parser.add_argument("--user", metavar="USERNAME", help="Only this user.")

    def handle(self, *args, dry_run: bool, user: str | None, **options):
        if user is not None and not get_user_model().objects.filter(username=user).exists():
            raise CommandError(f"No user named {user!r}.")
        outcomes = legacy_keys_migrate(
            dry_run=dry_run, username=user, actor_name="manage.py migrate_legacy_keys"
        )
        for outcome in outcomes:
            line = outcome.describe(dry_run)
            self.stdout.write(
                self.style.WARNING(line) if outcome.result == "undecryptable" else line
            )
        done = sum(outcome.result != "undecryptable" for outcome in outcomes)
        skipped = len(outcomes) - done
        if not outcomes:
            self.stdout.write("No legacy key waiting to be migrated.")
        elif dry_run:
            self.stdout.write(f"Dry run: {done} to migrate, {skipped} skipped; nothing written.")
        else:
            self.stdout.write(f"Migrated {done} legacy key(s), skipped {skipped}.")
