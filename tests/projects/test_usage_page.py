"""/usage/: the user's own tokens and cost in a range of days, as totals, a chart by day,
a table by project/provider/model and a CSV, in a constant number of queries."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from projects.models import Project
from tests.factories import UsageFactory

pytestmark = pytest.mark.django_db

JANUARY = "?start=2026-01-01&end=2026-01-31"


def at(day: int, hour: int = 12, month: int = 1) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=ZoneInfo("UTC"))


def _csv(response) -> list[dict]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def bakery(alice):
    return Project.objects.create(
        owner=alice, name="Bakery", prompt="p", current_model_provider_id="anthropic"
    )


def test_the_nav_links_the_usage_page(alice_client):
    html = alice_client.get("/projects/").content.decode()
    assert 'href="/usage/"' in html


def test_only_your_own_usage_is_shown(alice_client, alice, bob, bakery):
    UsageFactory(user=alice, project=bakery, model_id="alice-model", created_at=at(3))
    UsageFactory(
        user=bob, project_name="Bob's shop", model_id="bob-model", cost=7, created_at=at(3)
    )
    html = alice_client.get("/usage/" + JANUARY).content.decode()
    assert "alice-model" in html
    assert "bob-model" not in html and "Bob" not in html
    rows = _csv(alice_client.get("/usage/" + JANUARY + "&format=csv"))
    assert [row["model"] for row in rows] == ["alice-model"]


def test_totals_sum_every_kind_of_token_and_the_cost(alice_client, alice, bakery):
    for day in (2, 3):
        UsageFactory(
            user=alice,
            project=bakery,
            input_tokens=1000,
            output_tokens=200,
            reasoning_tokens=30,
            cache_read_tokens=4000,
            cache_write_tokens=5,
            cost=Decimal("0.012"),
            created_at=at(day),
        )
    html = alice_client.get("/usage/" + JANUARY).content.decode()
    assert 'data-total="cost">$0.0240<' in html
    assert 'data-total="tokens">10,470<' in html
    assert 'data-total="input">2,000<' in html
    assert 'data-total="cache_read">8,000<' in html
    assert 'data-total="messages">2<' in html


def test_a_model_without_a_price_says_no_price(alice_client, alice, bakery):
    UsageFactory(
        user=alice,
        project=bakery,
        provider_id="stub",
        model_id="free",
        priced=False,
        created_at=at(4),
    )
    html = alice_client.get("/usage/" + JANUARY).content.decode()
    assert 'data-total="cost">no price<' in html
    assert "no price</span>" in html  # the table's row
    assert "1 reply came from models with no price" in html


def test_the_chart_stacks_each_day_by_provider_or_by_model(alice_client, alice, bakery):
    UsageFactory(user=alice, project=bakery, provider_id="anthropic", created_at=at(5))
    UsageFactory(user=alice, project=bakery, provider_id="openai", model_id="gpt", created_at=at(5))
    UsageFactory(user=alice, project=bakery, provider_id="openai", model_id="o3", created_at=at(9))
    html = alice_client.get("/usage/" + JANUARY).content.decode()
    assert html.count('<g data-day="') == 31
    day5 = html.split('<g data-day="2026-01-05">')[1].split("</g>")[0]
    assert day5.count("<rect") == 2
    assert 'data-series="anthropic"' in day5 and 'data-series="openai"' in day5
    by_model = alice_client.get("/usage/" + JANUARY + "&by=model").content.decode()
    day9 = by_model.split('<g data-day="2026-01-09">')[1].split("</g>")[0]
    assert 'data-series="o3"' in day9
    assert "style=" not in html  # the Content-Security-Policy allows no inline style


def test_the_table_groups_by_project_provider_and_model(alice_client, alice, bakery):
    for _ in range(3):
        UsageFactory(user=alice, project=bakery, cost=1, created_at=at(6))
    UsageFactory(user=alice, project=bakery, model_id="haiku", created_at=at(6))
    html = alice_client.get("/usage/" + JANUARY).content.decode()
    assert html.count("data-usage-row") == 2
    assert f'href="/projects/{bakery.pk}/"' in html


def test_a_deleted_projects_usage_stays(alice_client, alice, bakery):
    UsageFactory(user=alice, project=bakery, created_at=at(7))
    bakery.delete()
    html = alice_client.get("/usage/" + JANUARY).content.decode()
    assert 'Bakery <span class="muted">(deleted)</span>' in html


def test_by_default_the_range_is_this_month(alice_client, alice):
    from django.utils import timezone

    today = timezone.localdate()
    UsageFactory(user=alice, model_id="this-month")
    UsageFactory(user=alice, model_id="long-ago", created_at=timezone.now().replace(year=2020))
    html = alice_client.get("/usage/").content.decode()
    assert "this-month" in html and "long-ago" not in html
    assert f'value="{today.replace(day=1).isoformat()}"' in html
    assert f'value="{today.isoformat()}"' in html


def test_the_csv_has_the_contract_columns_and_keeps_to_the_range(alice_client, alice, bakery):
    UsageFactory(
        user=alice,
        project=bakery,
        input_tokens=10,
        output_tokens=3,
        cost=Decimal("0.5"),
        created_at=at(8, hour=1),
    )
    UsageFactory(
        user=alice,
        project=bakery,
        input_tokens=5,
        output_tokens=1,
        cost=Decimal("0.25"),
        created_at=at(8, hour=20),
    )
    UsageFactory(user=alice, project=bakery, created_at=at(2, month=2))  # outside
    response = alice_client.get("/usage/" + JANUARY + "&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = _csv(response)
    header = set(rows[0])
    assert {"date", "project", "provider", "model", "input_tokens", "output_tokens", "cost"} <= (
        header
    )
    assert len(rows) == 1
    row = rows[0]
    assert (row["date"], row["project"], row["provider"], row["model"]) == (
        "2026-01-08",
        "Bakery",
        "anthropic",
        "claude-sonnet-4",
    )
    assert (row["input_tokens"], row["output_tokens"], row["messages"]) == ("15", "4", "2")
    assert Decimal(row["cost"]) == Decimal("0.75")


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("?start=2026-02-01&end=2026-01-01", "The range ends (2026-01-01) before it starts"),
        ("?start=yesterday", "Write the start date as YYYY-MM-DD"),
        ("?end=2026-13-01", "Write the end date as YYYY-MM-DD"),
        ("?start=2024-01-01&end=2026-01-01", "at most 366"),
        ("?by=colour", "Select a valid choice"),
    ],
)
def test_a_bad_range_gets_a_clear_error(alice_client, alice, query, error):
    UsageFactory(user=alice, created_at=at(3))
    response = alice_client.get("/usage/" + query)
    assert response.status_code == 400
    assert error in response.content.decode()
    csv_response = alice_client.get("/usage/" + query + "&format=csv")
    assert csv_response.status_code == 400
    assert error in csv_response.content.decode()


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_page_costs_the_same_queries_however_much_was_used(
    alice_client, alice, django_assert_max_num_queries
):
    UsageFactory(user=alice, created_at=at(1))
    few = _queries(alice_client, "/usage/" + JANUARY)
    for n in range(60):
        project = Project.objects.create(
            owner=alice, name=f"site {n}", prompt="p", current_model_provider_id="p"
        )
        UsageFactory(
            user=alice,
            project=project,
            provider_id=f"provider-{n % 12}",
            model_id=f"model-{n}",
            created_at=at(1 + n % 28),
        )
    assert _queries(alice_client, "/usage/" + JANUARY) == few
    with django_assert_max_num_queries(8):
        alice_client.get("/usage/" + JANUARY + "&by=model&metric=cost")


def test_anonymous_visitors_are_sent_to_log_in(client, alice):
    response = client.get("/usage/")
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]
