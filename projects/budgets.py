"""Monthly budgets (docs/usage.md): a user's limit in tokens and/or US dollars, from their
override (``Budget``) or else the settings' default (DOCE_BUDGET_TOKENS, DOCE_BUDGET_USD),
against what they used since the first of the month. At 80 % the project and usage pages
warn; at 100 % a new prompt (a new project, a message) is refused before it reaches
OpenCode. A reply already running is not cut: the next prompt is the one refused."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal

from django.conf import settings
from django.utils import timezone
from django.utils.formats import date_format

from projects.models import Budget, Usage
from projects.usage import sums

WARNING_AT = Decimal("0.8")


class BudgetExceeded(Exception):
    """The user's monthly budget is used up; the message says which, how much, and when
    it resets."""


def default_limits() -> tuple[int | None, Decimal | None]:
    """The settings' default budget (empty: no bound of that kind)."""
    tokens = settings.DOCE_BUDGET_TOKENS.strip()
    usd = settings.DOCE_BUDGET_USD.strip()
    return (int(Decimal(tokens)) if tokens else None, Decimal(usd) if usd else None)


def month_start(now: datetime | None = None) -> datetime:
    """Midnight of the first day of this month, in doce's time zone (TIME_ZONE)."""
    today = timezone.localdate(now)
    return timezone.make_aware(
        datetime.combine(today.replace(day=1), time.min), timezone.get_current_timezone()
    )


def next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


@dataclass(frozen=True)
class Limit:
    """One kind of budget (tokens or usd) and how much of it is used."""

    kind: str
    limit: int | Decimal
    used: int | Decimal

    @property
    def fraction(self) -> Decimal:
        if not self.limit:
            return Decimal(1)  # a budget of 0: nothing may be used
        return Decimal(self.used) / Decimal(self.limit)

    @property
    def percent(self) -> int:
        return int(self.fraction * 100)

    def describe(self) -> str:
        if self.kind == "tokens":
            return f"{self.used:,} of {self.limit:,} tokens ({self.percent} %)"
        return f"${self.used:,.2f} of ${self.limit:,.2f} ({self.percent} %)"

    @property
    def name(self) -> str:
        return "token budget" if self.kind == "tokens" else "cost budget"


@dataclass(frozen=True)
class BudgetState:
    limits: tuple[Limit, ...]  # only the kinds that have a bound
    own: bool  # the user's own override, not the default
    tokens_used: int
    cost_used: Decimal
    resets_on: date

    @property
    def bounded(self) -> bool:
        return bool(self.limits)

    @property
    def exceeded(self) -> bool:
        return any(limit.fraction >= 1 for limit in self.limits)

    @property
    def warning(self) -> bool:
        return any(limit.fraction >= WARNING_AT for limit in self.limits)

    @property
    def message(self) -> str:
        """What the user is told at 80 % and at 100 %: which budget, how much of it is
        used, when it resets. Empty below 80 %."""
        resets = date_format(self.resets_on, "j F Y")
        whose = "" if self.own else " (the default for every user)"
        if self.exceeded:
            over = [limit for limit in self.limits if limit.fraction >= 1]
            names = " and ".join(limit.name for limit in over)
            verb = "are" if len(over) > 1 else "is"
            used = "; ".join(limit.describe() for limit in over)
            return (
                f"Your monthly {names}{whose} {verb} used up: {used} this month. "
                f"New prompts are refused until it resets on {resets}."
            )
        if self.warning:
            near = [limit for limit in self.limits if limit.fraction >= WARNING_AT]
            names = " and ".join(limit.name for limit in near)
            used = "; ".join(limit.describe() for limit in near)
            return f"You have used {used} of your monthly {names}{whose}. It resets on {resets}."
        return ""


def budget_state(*, user, now: datetime | None = None) -> BudgetState:
    """The user's budget for the current month: the override (one lookup by its unique
    user) or the default, and, when any bound applies, what was used since the first of
    the month (one aggregate on Usage over the (user, created_at) index)."""
    since = month_start(now)
    override = Budget.objects.filter(user=user).values_list("tokens", "usd").first()
    tokens_limit, usd_limit = override if override is not None else default_limits()
    used_tokens, used_cost = 0, Decimal(0)
    if tokens_limit is not None or usd_limit is not None:
        wanted = {name: value for name, value in sums().items() if name in ("tokens", "spent")}
        used = Usage.objects.filter(user=user, created_at__gte=since).aggregate(**wanted)
        used_tokens, used_cost = int(used["tokens"]), Decimal(used["spent"])
    limits = []
    if tokens_limit is not None:
        limits.append(Limit("tokens", tokens_limit, used_tokens))
    if usd_limit is not None:
        limits.append(Limit("usd", usd_limit, used_cost))
    return BudgetState(
        limits=tuple(limits),
        own=override is not None,
        tokens_used=used_tokens,
        cost_used=used_cost,
        resets_on=next_month(since.date()),
    )


def budget_check(*, user) -> BudgetState:
    """Refuse a new prompt once the monthly budget is used up (BudgetExceeded)."""
    state = budget_state(user=user)
    if state.exceeded:
        raise BudgetExceeded(state.message)
    return state
