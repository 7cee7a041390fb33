"""Monthly budgets: the default or the user's override against what they used this
month, one indexed query; a warning at 80 %, and at 100 % a new project or message is
refused before anything reaches OpenCode, with a message that says which budget, how
much is used and when it resets."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects import budgets, services
from projects.budgets import BudgetExceeded, budget_state
from projects.models import Budget, Project
from queue_jobs.models import Job
from tests.factories import ProviderConnectionFactory, UsageFactory

pytestmark = pytest.mark.django_db


def _next_month_text() -> str:
    first = budgets.next_month(timezone.localdate())
    return f"1 {first.strftime('%B')} {first.year}"


@pytest.fixture
def ten_tokens(settings):
    settings.DOCE_BUDGET_TOKENS = "10"
    settings.DOCE_BUDGET_USD = ""


@pytest.fixture
def spent_15(alice):
    return UsageFactory(user=alice, input_tokens=10, output_tokens=5)


@pytest.fixture
def running(alice_project):
    # Its provider is one Alice may use (a prompt on a lost key is refused first).
    ProviderConnectionFactory(user=alice_project.owner, provider_id="stub")
    alice_project.status = Project.Status.RUNNING
    alice_project.bootstrap_session_id = "ses_1"
    alice_project.error_message = ""
    alice_project.save()
    return alice_project


def test_without_a_budget_nothing_is_bounded(alice, spent_15, django_assert_num_queries):
    with django_assert_num_queries(1):  # the override lookup; no bound, no sum
        state = budget_state(user=alice)
    assert not state.bounded and not state.warning and not state.exceeded
    assert state.message == ""


def test_the_default_budget_counts_this_months_tokens_of_every_kind(alice, bob, ten_tokens):
    UsageFactory(user=alice, input_tokens=2, output_tokens=2, reasoning_tokens=1,
                 cache_read_tokens=2, cache_write_tokens=1)  # fmt: skip
    UsageFactory(user=bob, input_tokens=100)  # someone else's
    UsageFactory(user=alice, input_tokens=100, created_at=timezone.now() - timedelta(days=40))
    state = budget_state(user=alice)
    assert (state.tokens_used, state.exceeded, state.warning) == (8, False, True)
    assert state.message == (
        f"You have used 8 of 10 tokens (80 %) of your monthly token budget (the default for "
        f"every user). It resets on {_next_month_text()}."
    )


def test_below_80_percent_there_is_no_warning(alice, ten_tokens):
    UsageFactory(user=alice, input_tokens=7, output_tokens=0)
    assert not budget_state(user=alice).warning


def test_a_used_up_budget_says_which_how_much_and_when_it_resets(alice, ten_tokens, spent_15):
    state = budget_state(user=alice)
    assert state.exceeded
    assert state.message == (
        "Your monthly token budget (the default for every user) is used up: 15 of 10 tokens "
        f"(150 %) this month. New prompts are refused until it resets on {_next_month_text()}."
    )


def test_a_users_override_replaces_the_default(alice, ten_tokens, spent_15):
    Budget.objects.create(user=alice, tokens=1000, usd=Decimal("2.00"))
    UsageFactory(user=alice, input_tokens=0, output_tokens=0, cost=Decimal("1.90"))
    state = budget_state(user=alice)
    assert state.own and state.warning and not state.exceeded
    assert "$1.90 of $2.00 (95 %) of your monthly cost budget." in state.message
    Budget.objects.filter(user=alice).update(tokens=None, usd=None)  # no bound at all
    assert not budget_state(user=alice).bounded


def test_both_budgets_used_up_are_both_named(alice, settings, spent_15):
    settings.DOCE_BUDGET_TOKENS, settings.DOCE_BUDGET_USD = "10", "0.5"
    UsageFactory(user=alice, input_tokens=0, output_tokens=0, cost=1)
    message = budget_state(user=alice).message
    assert message.startswith("Your monthly token budget and cost budget (the default")
    assert "15 of 10 tokens (150 %); $1.00 of $0.50 (200 %) this month" in message


def test_a_budget_of_zero_refuses_from_the_start(alice, settings):
    settings.DOCE_BUDGET_USD = "0"
    assert budget_state(user=alice).exceeded


def test_the_month_resets_on_the_first_of_the_next(settings):
    assert budgets.next_month(date(2026, 12, 31)) == date(2027, 1, 1)
    assert budgets.next_month(date(2026, 1, 31)) == date(2026, 2, 1)
    settings.TIME_ZONE = "Europe/Berlin"
    with timezone.override(ZoneInfo("Europe/Berlin")):
        # 23:30 UTC on 31 March is already 1 April in Berlin: April's budget.
        start = budgets.month_start(datetime(2026, 3, 31, 23, 30, tzinfo=ZoneInfo("UTC")))
    assert start == datetime(2026, 4, 1, tzinfo=ZoneInfo("Europe/Berlin"))


def test_the_check_is_one_sum_over_the_user_and_date_index(alice, ten_tokens, spent_15):
    with CaptureQueriesContext(connection) as captured:
        budget_state(user=alice)
    assert len(captured) == 2  # the override (by its unique user), the sum
    usage_sql = captured.captured_queries[1]["sql"]
    assert "SUM(" in usage_sql.upper() and '"created_at" >=' in usage_sql
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute("EXPLAIN QUERY PLAN " + usage_sql)
        else:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("EXPLAIN " + usage_sql)
        plan = " ".join(str(row) for row in cursor.fetchall())
    assert "projects_usage_user_idx" in plan, plan


# --- refusals: a new project, a message ------------------------------------------------


def test_a_new_project_is_refused_with_the_message(alice_client, alice_stub, ten_tokens, spent_15):
    response = alice_client.post(
        "/projects/new/", {"prompt": "A bakery", "model": "stub/stub-model"}
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "Your monthly token budget (the default for every user) is used up: 15 of 10" in html
    assert not Project.objects.exists() and not Job.objects.exists()


def test_the_service_refuses_before_creating_anything(alice, ten_tokens, spent_15):
    with pytest.raises(BudgetExceeded, match="15 of 10 tokens"):
        services.project_create(owner=alice, prompt="A bakery", model="stub/stub-model")
    assert not Project.objects.exists()


@pytest.fixture
def no_server(monkeypatch):
    """The project's server as a page sees it when it cannot be reached (the page still
    renders from doce's copy); a prompt that got through to OpenCode fails the test."""

    def unreachable(*args, **kwargs):
        raise services.ProjectNotRunning("no server in this test")

    monkeypatch.setattr(services, "project_client", unreachable)
    monkeypatch.setattr(
        services.instance, "prompt_send", lambda *a, **k: pytest.fail("reached OpenCode")
    )


def test_a_message_is_refused_before_it_reaches_opencode(
    alice_client, running, ten_tokens, spent_15, no_server
):
    with pytest.raises(BudgetExceeded, match="15 of 10 tokens"):
        services.message_send(project=running, text="more")
    response = alice_client.post(f"/projects/{running.pk}/messages/", {"text": "more"}, follow=True)
    html = response.content.decode()
    assert "is used up: 15 of 10 tokens (150 %) this month" in html
    assert f"resets on {_next_month_text()}" in html


def test_an_htmx_message_refused_reloads_the_page_to_say_why(
    alice_client, running, ten_tokens, spent_15, no_server
):
    response = alice_client.post(
        f"/projects/{running.pk}/messages/", {"text": "more"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 204
    assert response["HX-Redirect"] == f"/projects/{running.pk}/"
    assert "15 of 10 tokens" in alice_client.get(response["HX-Redirect"]).content.decode()


def test_under_the_budget_a_message_goes_through(alice, running, ten_tokens, monkeypatch):
    sent = []
    monkeypatch.setattr(services, "project_client", lambda *a, **k: sent.append(1) or _Nothing())
    monkeypatch.setattr(services.instance, "server_lock", lambda *a, **k: _Nothing())
    monkeypatch.setattr(services.instance, "rebuild_if_pending", lambda *a, **k: None)
    monkeypatch.setattr(services.tokens, "oauth_lease", lambda **k: None)
    monkeypatch.setattr(services.instance, "prompt_send", lambda *a, **k: sent.append(2))
    services.message_send(project=running, text="more")
    assert sent == [1, 2]


class _Nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


# --- the warning on the pages ---------------------------------------------------------


def test_the_project_and_usage_pages_warn_at_80_percent(
    alice_client, alice, alice_project, ten_tokens
):
    UsageFactory(user=alice, input_tokens=8, output_tokens=0)
    for url in (f"/projects/{alice_project.pk}/", "/usage/"):
        html = alice_client.get(url).content.decode()
        assert 'data-budget-state="warning"' in html, url
        assert "You have used 8 of 10 tokens (80 %) of your monthly token budget" in html, url


def test_the_project_page_says_when_the_budget_is_used_up(
    alice_client, alice_project, ten_tokens, spent_15
):
    html = alice_client.get(f"/projects/{alice_project.pk}/").content.decode()
    assert 'data-budget-state="exceeded"' in html
    assert "New prompts are refused until it resets" in html


def test_no_warning_below_80_percent(alice_client, alice, alice_project, ten_tokens):
    UsageFactory(user=alice, input_tokens=7, output_tokens=0)
    for url in (f"/projects/{alice_project.pk}/", "/usage/"):
        assert "data-budget-state" not in alice_client.get(url).content.decode()
