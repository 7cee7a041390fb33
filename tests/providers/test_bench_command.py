"""The benchmark command keeps working (tiny sizes; its figures are not asserted)."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from providers.models import ProviderConnection


@pytest.mark.django_db
@pytest.mark.parametrize("database", ["temp-sqlite", "current"])
def test_bench_credentials_runs_and_leaves_nothing_behind(database):
    out = io.StringIO()
    call_command(
        "bench_credentials",
        "--connections",
        "25",
        "--samples",
        "5",
        "--batch-size",
        "10",
        "--database",
        database,
        stdout=out,
    )
    output = out.getvalue()
    assert "encrypt" in output and "µs" in output
    assert "rotate old -> new (25 rotated)" in output
    assert "re-run (25 already current)" in output
    assert "peak Python memory" in output
    assert not ProviderConnection.objects.exists()
    assert not get_user_model().objects.filter(username__startswith="bench-").exists()
