"""Reads of the usage table (projects.models.Usage): a user's totals, the chart by day, the
table by project/provider/model, and the CSV, for a range of days. Every figure is an
aggregate computed by the database, so a page costs the same few queries however many
replies it sums (docs/usage.md)."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum, Value
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from projects.models import Usage

TOKEN_KINDS = Usage.TOKEN_KINDS
#: Every token the provider processed, as ``Usage.total_tokens`` counts them.
TOTAL_TOKENS = sum((F(name) for name in Usage.TOKEN_FIELDS[1:]), start=F(Usage.TOKEN_FIELDS[0]))
MAX_RANGE_DAYS = 366
#: The chart shows this many series (providers or models) by name; the rest are "other".
CHART_SERIES = 8
CSV_HEADER = [
    "date",
    "project",
    "provider",
    "model",
    "messages",
    *Usage.TOKEN_FIELDS,
    "total_tokens",
    "cost",
    "unpriced_messages",
]


def sums() -> dict:
    """The aggregates every read shares (0, not None, for an empty set): tokens by kind
    (``input``…), ``tokens`` (all kinds), ``spent`` (the cost), ``messages`` (replies)
    and ``unpriced`` (replies of a model with no price). Named apart from the fields."""
    zero_cost = Value(Decimal(0), output_field=DecimalField(max_digits=20, decimal_places=6))
    return {
        **{kind: Coalesce(Sum(f"{kind}_tokens"), 0) for kind in TOKEN_KINDS},
        "tokens": Coalesce(Sum(TOTAL_TOKENS), 0),
        "spent": Coalesce(Sum("cost"), zero_cost),
        "messages": Count("id"),
        "unpriced": Count("id", filter=Q(priced=False)),
    }


@dataclass(frozen=True)
class DateRange:
    """Whole days, both ends included, in doce's time zone (TIME_ZONE)."""

    start: date
    end: date

    @classmethod
    def this_month(cls, today: date | None = None) -> DateRange:
        today = today or timezone.localdate()
        return cls(today.replace(day=1), today)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def bounds(self) -> tuple[datetime, datetime]:
        """[from, to) as aware datetimes: midnight of the start, midnight after the end."""
        zone = timezone.get_current_timezone()
        return (
            timezone.make_aware(datetime.combine(self.start, time.min), zone),
            timezone.make_aware(datetime.combine(self.end + timedelta(days=1), time.min), zone),
        )


def usage_for(*, user, span: DateRange) -> QuerySet[Usage]:
    """The user's usage rows in ``span`` (the (user, created_at) index)."""
    since, until = span.bounds()
    return Usage.objects.filter(user=user, created_at__gte=since, created_at__lt=until)


def usage_totals(rows: QuerySet[Usage]) -> dict:
    """Tokens by kind, total tokens, cost, replies and unpriced replies: one query."""
    return rows.aggregate(**sums())


def _day():
    return TruncDate("created_at", tzinfo=timezone.get_current_timezone())


def usage_table(rows: QuerySet[Usage]) -> list[dict]:
    """One row per project, provider and model, the costliest first: one query. A deleted
    project's rows keep its name (``project_id`` None)."""
    return list(
        rows.order_by()
        .values("project_id", "project_name", "provider_id", "model_id")
        .annotate(**sums())
        .order_by("-spent", "-tokens", "project_name", "provider_id", "model_id")
    )


@dataclass
class Bar:
    """One series' piece of one day's stacked bar, in the chart's coordinates."""

    series: str
    css: str
    y: float
    height: float
    value: float


@dataclass
class Day:
    day: date
    x: float
    width: float
    total: float
    bars: list[Bar] = field(default_factory=list)


@dataclass
class Chart:
    """A stacked bar chart by day, drawn by the template as inline SVG (attributes only:
    the Content-Security-Policy allows no inline style)."""

    days: list[Day]
    series: list[tuple[str, str]]  # (name, css class), the legend
    peak: float
    metric: str
    width: int = 720
    height: int = 200
    labels: list[tuple[float, str]] = field(default_factory=list)  # (x, text) under bars

    @property
    def empty(self) -> bool:
        return self.peak == 0


def usage_chart(
    rows: QuerySet[Usage], *, span: DateRange, by: str = "provider", metric: str = "tokens"
) -> Chart:
    """Tokens (or cost) by day, stacked by provider or by model: one query."""
    key = "provider_id" if by == "provider" else "model_id"
    value = "tokens" if metric == "tokens" else "spent"
    totals = sums()
    grouped = (
        rows.order_by()
        .annotate(day=_day())
        .values("day", key)
        .annotate(tokens=totals["tokens"], spent=totals["spent"])
    )
    per_day: dict[date, dict[str, float]] = {}
    per_series: dict[str, float] = {}
    for row in grouped:
        amount = float(row[value])
        per_day.setdefault(row["day"], {})[row[key]] = amount
        per_series[row[key]] = per_series.get(row[key], 0.0) + amount
    ranked = sorted(per_series, key=lambda name: (-per_series[name], name))
    named = ranked[:CHART_SERIES]
    css = {name: f"series-{n}" for n, name in enumerate(named)}
    legend = [(name, css[name]) for name in named]
    if len(ranked) > CHART_SERIES:
        legend.append(("other", "series-other"))
    chart = Chart(days=[], series=legend, peak=0.0, metric=metric)
    days = span.days
    slot = chart.width / len(days)
    totals = [sum(per_day.get(day, {}).values()) for day in days]
    chart.peak = max(totals, default=0.0)
    scale = (chart.height / chart.peak) if chart.peak else 0.0
    every = max(1, round(len(days) / 12))
    for n, day in enumerate(days):
        column = Day(day=day, x=n * slot + slot * 0.1, width=slot * 0.8, total=totals[n])
        stacked: dict[str, float] = {}
        for name, amount in per_day.get(day, {}).items():
            label = name if name in css else "other"
            stacked[label] = stacked.get(label, 0.0) + amount
        top = float(chart.height)
        for name, _css in legend:
            amount = stacked.get(name, 0.0)
            if not amount:
                continue
            height = amount * scale
            top -= height
            column.bars.append(
                Bar(series=name, css=_css, y=round(top, 2), height=round(height, 2), value=amount)
            )
        chart.days.append(column)
        if n % every == 0:
            chart.labels.append((round(n * slot + slot / 2, 2), day.strftime("%d %b")))
    return chart


def usage_daily(rows: QuerySet[Usage]) -> Iterator[dict]:
    """Sums by day, project, provider and model, oldest first (the CSV), streamed from
    the database in chunks."""
    return (
        rows.order_by()
        .annotate(day=_day())
        .values("day", "project_name", "provider_id", "model_id")
        .annotate(**sums())
        .order_by("day", "project_name", "provider_id", "model_id")
        .iterator(chunk_size=2000)
    )


def csv_lines(header: list[str], rows: Iterable[list]) -> Iterator[str]:
    """CSV text, one line at a time (for a StreamingHttpResponse)."""

    class _Line:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(_Line())
    yield writer.writerow(header)
    for row in rows:
        yield writer.writerow(row)


def daily_csv_rows(rows: QuerySet[Usage]) -> Iterator[list]:
    for row in usage_daily(rows):
        yield [
            row["day"].isoformat(),
            row["project_name"],
            row["provider_id"],
            row["model_id"],
            row["messages"],
            *(row[kind] for kind in TOKEN_KINDS),
            row["tokens"],
            row["spent"],
            row["unpriced"],
        ]
