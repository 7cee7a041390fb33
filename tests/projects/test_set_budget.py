"""`manage.py set_budget USERNAME [--tokens N] [--usd X] [--clear]`: an operator sets a
user's monthly budget, or removes it so the default applies; mistakes get clear errors."""

from __future__ import annotations

import re
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from projects.models import Budget
from tests.factories import UsageFactory

pytestmark = pytest.mark.django_db


def set_budget(*args: str) -> str:
    out = StringIO()
    call_command("set_budget", *args, stdout=out)
    return out.getvalue()


def test_tokens_and_usd_are_set_and_reported(alice):
    UsageFactory(user=alice, input_tokens=500, output_tokens=0, cost=Decimal("1.5"))
    out = set_budget("alice", "--tokens", "1000", "--usd", "12.50")
    budget = Budget.objects.get(user=alice)
    assert (budget.tokens, budget.usd) == (1000, Decimal("12.50"))
    assert "alice (own budget): 500 of 1,000 tokens (50 %); $1.50 of $12.50 (12 %)" in out


def test_a_new_override_starts_from_the_default_and_changes_what_is_given(alice, settings):
    settings.DOCE_BUDGET_TOKENS, settings.DOCE_BUDGET_USD = "5000", "20"
    set_budget("alice", "--tokens", "100")
    budget = Budget.objects.get(user=alice)
    assert (budget.tokens, budget.usd) == (100, Decimal("20"))
    set_budget("alice", "--usd", "none")  # no cost bound for alice
    budget.refresh_from_db()
    assert (budget.tokens, budget.usd) == (100, None)


def test_clear_brings_the_default_back(alice, settings):
    settings.DOCE_BUDGET_TOKENS = "5000"
    Budget.objects.create(user=alice, tokens=10)
    out = set_budget("alice", "--clear")
    assert not Budget.objects.exists()
    assert "override removed" in out and "default budget" in out
    assert "had no override" in set_budget("alice", "--clear")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["nobody", "--tokens", "10"], "No user is called 'nobody'"),
        (["alice"], "Give --tokens N, --usd X (or both), or --clear"),
        (["alice", "--tokens", "-5"], "a budget cannot be negative"),
        (["alice", "--usd", "-1"], "a budget cannot be negative"),
        (["alice", "--tokens", "lots"], "write a whole number of tokens"),
        (["alice", "--tokens", "1.5"], "write a whole number of tokens"),
        (["alice", "--usd", "ten"], "write an amount of US dollars"),
        (["alice", "--usd", "NaN"], "write an amount of US dollars"),
        (["alice", "--usd", "0.001"], "at most 2 decimals"),
        (["alice", "--clear", "--tokens", "5"], "give it alone"),
    ],
)
def test_mistakes_get_a_clear_error_and_change_nothing(alice, args, error):
    with pytest.raises(CommandError, match=re.escape(error)):
        set_budget(*args)
    assert not Budget.objects.exists()
