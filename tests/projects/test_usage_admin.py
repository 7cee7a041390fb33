"""Staff see everyone's usage in the admin: filters by user, provider, model and date,
totals that follow the filters, a CSV; and the users' budgets, editable."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.utils import timezone

from projects.models import Budget
from tests.factories import UsageFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def usage(alice, bob):
    return [
        UsageFactory(user=alice, provider_id="anthropic", input_tokens=100, cost=Decimal("1")),
        UsageFactory(user=alice, provider_id="openai", input_tokens=20, cost=Decimal("0.5")),
        UsageFactory(user=bob, provider_id="anthropic", input_tokens=3, priced=False),
    ]


def test_the_changelist_shows_everyones_rows_with_totals(staff_client, usage):
    html = staff_client.get("/admin/projects/usage/").content.decode()
    assert "3 replies" in html
    assert "$1.5000 (1 with no price)" in html
    assert "no price" in html  # bob's row


def test_the_totals_follow_the_filters(staff_client, usage, alice):
    html = staff_client.get(f"/admin/projects/usage/?user__id__exact={alice.pk}").content.decode()
    assert "2 replies" in html and "$1.5000." in html
    html = staff_client.get("/admin/projects/usage/?provider_id=anthropic").content.decode()
    assert "2 replies" in html and "$1.0000" in html
    assert staff_client.get("/admin/projects/usage/?model_id=claude-sonnet-4").status_code == 200
    year = timezone.localdate().year
    html = staff_client.get(f"/admin/projects/usage/?created_at__year={year}").content.decode()
    assert "3 replies" in html
    html = staff_client.get(f"/admin/projects/usage/?created_at__year={year - 1}").content.decode()
    assert "0 replies" in html


def test_the_csv_action_exports_the_selected_rows(staff_client, usage):
    response = staff_client.post(
        "/admin/projects/usage/",
        {"action": "export_csv", "_selected_action": [row.pk for row in usage]},
    )
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 3
    assert {"date", "user", "project", "provider", "model", "input_tokens", "cost"} <= set(rows[0])
    assert sorted(row["user"] for row in rows) == ["alice", "alice", "bob"]


def test_usage_rows_are_read_only(staff_client, usage):
    assert staff_client.get("/admin/projects/usage/add/").status_code == 403
    page = staff_client.get(f"/admin/projects/usage/{usage[0].pk}/change/").content.decode()
    assert 'name="input_tokens"' not in page


def test_a_budget_is_set_in_the_admin(staff_client, alice):
    response = staff_client.post(
        "/admin/projects/budget/add/", {"user": alice.pk, "tokens": "1000", "usd": ""}
    )
    assert response.status_code == 302
    budget = Budget.objects.get(user=alice)
    assert (budget.tokens, budget.usd) == (1000, None)
    assert "alice" in staff_client.get("/admin/projects/budget/").content.decode()


def test_non_staff_users_see_no_usage_in_the_admin(alice_client):
    assert alice_client.get("/admin/projects/usage/").status_code == 302
