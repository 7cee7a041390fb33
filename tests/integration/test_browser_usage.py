"""The usage page in Chromium, under the Content-Security-Policy (the ``page`` fixture
fails on any violation): totals, the stacked chart (inline SVG), the table, the budget's
warning, the CSV link. A screenshot is saved as ``usage.png`` in
``tests.conftest.SCREENSHOTS`` (ignored by git) for people to look at."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from projects import budgets
from projects.models import Project, Usage
from tests.conftest import screenshot
from tests.factories import DEFAULT_PASSWORD, UsageFactory

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_the_usage_page_in_a_real_browser(page, live_server, alice, bob, settings):
    bakery = Project.objects.create(
        owner=alice, name="Bakery", prompt="p", current_model_provider_id="anthropic"
    )
    models = [("anthropic", "claude-sonnet-4"), ("openrouter", "openai/gpt-5"), ("stub", "mine")]
    start = timezone.now() - timedelta(days=9)
    for day in range(10):
        for n, (provider, model) in enumerate(models):
            UsageFactory(
                user=alice,
                project=bakery,
                provider_id=provider,
                model_id=model,
                input_tokens=2000 * (day + 1) * (n + 1),
                output_tokens=600 * (n + 1),
                cache_read_tokens=1500 * day,
                # a custom endpoint with no price: tokens, cost 0
                cost=Decimal("0.01") * (day + 1) * (n + 1) if provider != "stub" else 0,
                priced=provider != "stub",
                created_at=start + timedelta(days=day),
            )
    UsageFactory(user=bob, model_id="bobs-model")
    this_month = Usage.objects.filter(user=alice, created_at__gte=budgets.month_start())
    used = sum(row.total_tokens for row in this_month)
    settings.DOCE_BUDGET_TOKENS = str(int(used / Decimal("0.9")))  # 90 %: the warning

    page.goto(live_server.url + "/accounts/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", DEFAULT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(live_server.url + "/projects/")
    page.locator("nav[aria-label=Main]").get_by_role("link", name="Usage").click()
    page.wait_for_url(live_server.url + "/usage/")

    assert page.locator("svg.chart rect").count() > 0
    box = page.locator("svg.chart").bounding_box()
    assert box and box["height"] > 100, box  # drawn at its size, not collapsed
    assert page.locator("[data-usage-row]").count() == 3
    assert page.locator('[data-budget-state="warning"]').count() == 1
    assert "bobs-model" not in page.content()
    assert page.locator("[data-usage-csv]").is_visible()

    page.set_viewport_size({"width": 1100, "height": 900})
    assert screenshot(page, "usage").stat().st_size > 10_000

    page.select_option("#id_by", "model")
    page.get_by_role("button", name="Show").click()
    page.wait_for_url("**by=model**")
    assert page.locator('svg.chart rect[data-series="openai/gpt-5"]').count() > 0
