"""`manage.py shared_connection add|list|remove`: team keys (providers.shared).

    manage.py shared_connection add openrouter --name "Company OpenRouter" --all --api-key-stdin
    manage.py shared_connection add acme --name "ACME gateway" --base-url https://llm.acme/v1 \\
        --models gpt-4o,llama-3 --users alice,bob --groups designers --api-key-stdin
    manage.py shared_connection list
    manage.py shared_connection remove openrouter

The key is read from standard input (never an argument: those end up in shell history
and process lists) and checked with the provider as a user's key is.
"""

from __future__ import annotations

import sys

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from providers import shared
from providers.forms import parse_models
from providers.selectors import shared_connections

MAX_KEY_LENGTH = 16_384


def _names(value: str | None) -> list[str]:
    return [name.strip() for name in (value or "").split(",") if name.strip()]


def _message(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        return " ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


class Command(BaseCommand):
    help = "Add, list or remove team keys: connections staff share with users and groups."

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", required=True, metavar="add|list|remove")
        add = actions.add_parser("add", help="share a key for a provider")
        add.add_argument("provider_id")
        add.add_argument("--name", required=True, help="what users see, e.g. “Company OpenRouter”")
        add.add_argument("--base-url", default="", help="a custom OpenAI-compatible endpoint")
        add.add_argument("--models", default="", help="its model ids, comma-separated")
        who = add.add_mutually_exclusive_group(required=True)
        who.add_argument("--users", help="user names, comma-separated")
        who.add_argument("--all", action="store_true", help="every user")
        add.add_argument("--groups", help="group names, comma-separated (with --users or alone)")
        add.add_argument(
            "--api-key-stdin", action="store_true", help="read the API key from standard input"
        )
        actions.add_parser("list", help="list the team keys and who may use them")
        remove = actions.add_parser("remove", help="delete a provider's team key")
        remove.add_argument("provider_id")

    def handle(self, *args, action: str, **options):
        getattr(self, f"_{action}")(**options)

    def _add(self, *, provider_id, name, base_url, models, users, groups, api_key_stdin, **options):
        everyone = options["all"]
        if everyone and groups:
            raise CommandError("--all already includes every group: give --groups without it.")
        api_key = ""
        if api_key_stdin:
            api_key = sys.stdin.read(MAX_KEY_LENGTH + 1).strip()
            if len(api_key) > MAX_KEY_LENGTH:
                raise CommandError(f"The key on standard input is longer than {MAX_KEY_LENGTH}.")
            if not api_key:
                raise CommandError("--api-key-stdin: standard input held no key.")
        elif not base_url:
            raise CommandError("Give the key with --api-key-stdin (e.g. `pass show x | ...`).")
        try:
            grants = shared.grants_from_names(
                users=_names(users), groups=_names(groups), everyone=everyone
            )
            model_ids = parse_models(models.replace(",", "\n")) if models else []
            connection, check = shared.shared_connection_add(
                actor=None,
                provider_id=provider_id,
                name=name,
                api_key=api_key,
                grants=grants,
                base_url=base_url.strip(),
                models=model_ids,
            )
        except ValidationError as error:
            raise CommandError(_message(error)) from None
        self.stdout.write(
            f"Shared {connection.provider_id} as “{connection.name}” with {grants.describe()}"
            f" (key {connection.key_hint or 'none'}; check: {check.outcome}"
            + (f", {check.message}" if check.message else "")
            + ")."
        )

    def _list(self, **options):
        rows = list(shared_connections().order_by("provider_id"))
        if not rows:
            self.stdout.write("No team keys.")
            return
        self.stdout.write(f"{'provider':<24}{'name':<28}{'key':<18}{'status':<11}shared with")
        for connection in rows:
            self.stdout.write(
                f"{connection.provider_id:<24}{connection.name[:27]:<28}"
                f"{connection.key_hint or '-':<18}{connection.effective_status:<11}"
                f"{shared.grants_of(connection).describe()}"
            )

    def _remove(self, *, provider_id, **options):
        if not shared.shared_connection_remove(provider_id=provider_id.strip(), actor=None):
            raise CommandError(f"{provider_id} has no team key (see `shared_connection list`).")
        self.stdout.write(f"Removed the team key of {provider_id}; projects using it lose it.")
