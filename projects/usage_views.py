"""The usage page (``/usage/``): the user's own tokens and cost in a range of days, as
totals, a chart by day, a table by project/provider/model, and a CSV (docs/usage.md)."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from django.shortcuts import render

from projects import budgets, usage
from projects.forms import UsageRangeForm


def usage_page(request):
    form = UsageRangeForm(request.GET)
    as_csv = request.GET.get("format") == "csv"
    if not form.is_valid():
        if as_csv:
            problems = "; ".join(" ".join(errors) for errors in form.errors.values())
            return HttpResponse(problems, status=400, content_type="text/plain; charset=utf-8")
        context = {"form": form, "budget": budgets.budget_state(user=request.user)}
        return render(request, "projects/usage.html", context, status=400)
    span = form.cleaned_data["span"]
    rows = usage.usage_for(user=request.user, span=span)
    if as_csv:
        return _csv_response(rows, span)
    by, metric = form.cleaned_data["by"], form.cleaned_data["metric"]
    context = {
        "form": form,
        "span": span,
        "by": by,
        "metric": metric,
        "totals": usage.usage_totals(rows),
        "chart": usage.usage_chart(rows, span=span, by=by, metric=metric),
        "table": usage.usage_table(rows),
        "budget": budgets.budget_state(user=request.user),
    }
    return render(request, "projects/usage.html", context)


def _csv_response(rows, span: usage.DateRange) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        usage.csv_lines(usage.CSV_HEADER, usage.daily_csv_rows(rows)),
        content_type="text/csv; charset=utf-8",
    )
    name = f"doce-usage-{span.start.isoformat()}-{span.end.isoformat()}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
