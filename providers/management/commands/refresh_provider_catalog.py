"""Read the provider catalog from OpenCode (a short-lived server) and store it."""

from django.core.management.base import BaseCommand, CommandError

from providers.catalog import catalog_status
from providers.catalog.fetch import CatalogUnavailable, catalog_refresh


class Command(BaseCommand):
    help = (
        "Refresh the provider catalog (providers, auth methods, models) from OpenCode: "
        "starts a throw-away OpenCode server, reads GET /provider and GET /provider/auth, "
        "stores the trimmed result in the database."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--status", action="store_true", help="Only show what is stored, fetch nothing."
        )

    def handle(self, *args, status: bool = False, **options):
        if not status:
            try:
                count = catalog_refresh()
            except CatalogUnavailable as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(self.style.SUCCESS(f"Stored {count} providers."))
        current = catalog_status()
        if current.is_fallback:
            self.stdout.write(
                f"No catalog fetched yet: the built-in list of {current.providers} "
                "providers is used."
            )
        else:
            self.stdout.write(
                f"{current.providers} providers from OpenCode {current.opencode_version or '?'}"
                f", fetched {current.fetched_at:%Y-%m-%d %H:%M:%S %Z}."
            )
