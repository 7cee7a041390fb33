"""`manage.py organisation add|list|refresh|remove`: organisations for the well-known
sign-in (providers.organisations), as the admin registers them.

    manage.py organisation add https://ai.example.com --name "Example AI"
    manage.py organisation list
    manage.py organisation refresh [URL]
    manage.py organisation remove https://ai.example.com
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from providers.organisations import services
from providers.organisations.document import DocumentError
from providers.organisations.fetch import url_normalise
from providers.organisations.models import Organisation
from providers.organisations.selectors import stored_document


class Command(BaseCommand):
    help = "Register, list, refresh or remove organisations (OpenCode's well-known sign-in)."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(
            dest="action", required=True, metavar="add|list|refresh|remove"
        )
        add = actions.add_parser("add", help="register an organisation and fetch its document")
        add.add_argument("url")
        add.add_argument("--name", default="", help="what users see")
        actions.add_parser("list", help="list the organisations and what they declare")
        refresh = actions.add_parser("refresh", help="fetch the documents again")
        refresh.add_argument("url", nargs="?", help="one organisation (default: all)")
        remove = actions.add_parser("remove", help="forget an organisation and its users' tokens")
        remove.add_argument("url")

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _add(self, *, url: str, name: str, **_options) -> None:
        try:
            organisation = services.organisation_add(url=url, name=name)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        self._report(organisation)

    def _list(self, **_options) -> None:
        organisations = Organisation.objects.order_by("name", "url")
        if not organisations:
            self.stdout.write("No organisation is registered.")
        for organisation in organisations:
            self._report(organisation)

    def _refresh(self, *, url: str | None, **_options) -> None:
        organisations = [self._get(url)] if url else list(Organisation.objects.order_by("pk"))
        for organisation in organisations:
            services.organisation_refresh(organisation=organisation)
            self._report(organisation)

    def _remove(self, *, url: str, **_options) -> None:
        organisation = self._get(url)
        services.organisation_remove(organisation=organisation)
        self.stdout.write(f"Removed {organisation.url}.")

    def _get(self, url: str) -> Organisation:
        try:
            return Organisation.objects.get(url=url_normalise(url))
        except (DocumentError, Organisation.DoesNotExist) as exc:
            raise CommandError(f"No organisation is registered at {url}.") from exc

    def _report(self, organisation: Organisation) -> None:
        self.stdout.write(f"{organisation.display_name} <{organisation.url}>")
        if organisation.fetch_error:
            self.stdout.write(f"  error: {organisation.fetch_error}")
        document = stored_document(organisation)
        if document is None:
            return
        self.stdout.write(f"  command: {organisation.command_text} (token in ${document.env_name})")
        for provider in document.providers:
            models = ", ".join(model_id for model_id, _ in provider.models) or "(catalog)"
            self.stdout.write(f"  {provider.id} ({provider.name}): {models}")
        tokens = organisation.tokens.count()
        self.stdout.write(f"  {tokens} user{'s' if tokens != 1 else ''} connected")
