"""`manage.py set_budget USERNAME [--tokens N] [--usd X] [--clear]`: a user's monthly
budget, instead of the default (DOCE_BUDGET_TOKENS, DOCE_BUDGET_USD; docs/usage.md).

A new override starts from the default and changes what is given; ``none`` lifts that
kind's bound for this user; ``--clear`` removes the override (the default applies again).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from projects import budgets
from projects.models import Budget

NO_BOUND = "none"
USD_MAX = Decimal("9999999999.99")  # Budget.usd: 12 digits, 2 after the point


def _tokens(value: str) -> int | None:
    if value.strip().lower() == NO_BOUND:
        return None
    try:
        tokens = int(value.strip().replace("_", ""))
    except ValueError:
        raise CommandError(
            f"--tokens {value!r}: write a whole number of tokens (e.g. 2000000), or "
            f"“{NO_BOUND}” for no token bound."
        ) from None
    if tokens < 0:
        raise CommandError(f"--tokens {value!r}: a budget cannot be negative.")
    return tokens


def _usd(value: str) -> Decimal | None:
    if value.strip().lower() == NO_BOUND:
        return None
    try:
        usd = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise CommandError(
            f"--usd {value!r}: write an amount of US dollars (e.g. 25 or 12.50), or "
            f"“{NO_BOUND}” for no cost bound."
        ) from None
    if not usd.is_finite():
        raise CommandError(f"--usd {value!r}: write an amount of US dollars (e.g. 25 or 12.50).")
    if usd < 0:
        raise CommandError(f"--usd {value!r}: a budget cannot be negative.")
    if usd > USD_MAX or usd != usd.quantize(Decimal("0.01")):
        raise CommandError(f"--usd {value!r}: use at most {USD_MAX} with at most 2 decimals.")
    return usd


class Command(BaseCommand):
    help = (
        "Set a user's monthly budget in tokens and/or US dollars (instead of the default "
        "from DOCE_BUDGET_TOKENS / DOCE_BUDGET_USD), or --clear it."
    )

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--tokens", help=f"tokens a month, or “{NO_BOUND}” for no bound")
        parser.add_argument("--usd", help=f"US dollars a month, or “{NO_BOUND}” for no bound")
        parser.add_argument(
            "--clear", action="store_true", help="remove the override: the default applies"
        )

    def handle(self, *args, username: str, tokens, usd, clear: bool, **options):
        if clear and (tokens is not None or usd is not None):
            raise CommandError("--clear removes the budget: give it alone, without --tokens/--usd.")
        if not clear and tokens is None and usd is None:
            raise CommandError("Give --tokens N, --usd X (or both), or --clear.")
        user_model = get_user_model()
        try:
            user = user_model.objects.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"No user is called {username!r}.") from None
        if clear:
            deleted, _ = Budget.objects.filter(user=user).delete()
            self.stdout.write(
                f"{username}: override removed; the default applies."
                if deleted
                else f"{username}: had no override; the default applies."
            )
        else:
            new_tokens = _tokens(tokens) if tokens is not None else None
            new_usd = _usd(usd) if usd is not None else None
            budget = Budget.objects.filter(user=user).first()
            if budget is None:
                default_tokens, default_usd = budgets.default_limits()
                budget = Budget(user=user, tokens=default_tokens, usd=default_usd)
            if tokens is not None:
                budget.tokens = new_tokens
            if usd is not None:
                budget.usd = new_usd
            budget.save()
        self.stdout.write(self._describe(user, username))

    def _describe(self, user, username: str) -> str:
        state = budgets.budget_state(user=user)
        if not state.bounded:
            return f"{username}: no monthly budget."
        whose = "own budget" if state.own else "default budget"
        used = "; ".join(limit.describe() for limit in state.limits)
        return (
            f"{username} ({whose}): {used} used this month; "
            f"resets on {state.resets_on.isoformat()}."
        )
