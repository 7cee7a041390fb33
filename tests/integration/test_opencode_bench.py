"""The benchmark command keeps working (its figures are read by people, not asserted)."""

from __future__ import annotations

import json
import tempfile
from io import StringIO

import pytest
from django.core.management import call_command

from tests.doce.opencode.fakes import processes_in
from tests.doce.opencode.servers import require_binary

pytestmark = pytest.mark.integration


def test_bench_opencode_reports_every_figure(tmp_path, monkeypatch):
    require_binary()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its project folder lands here
    out = StringIO()
    call_command("bench_opencode", iterations=1, json=True, stdout=out)
    figures = json.loads(out.getvalue())
    for key in (
        "start_to_healthy_ms",
        "put_auth_opencode_ms",
        "inject_through_doce_ms",
        "inject_doce_overhead_no_network_ms",
        "first_prompt_ms",
        "warm_prompt_ms",
        "dispose_opencode_ms",
        "prompt_after_dispose_ms",
        "rss_healthy_mb",
        "stop_ms",
        "sandboxed_start_to_healthy_ms",
        "plain_start_to_healthy_ms",
        "sandbox_memory_mb",
    ):
        assert figures[key] > 0, key
    assert figures["inject_doce_overhead_no_network_ms"] < 50  # doce's own cost stays small
    assert list(tmp_path.iterdir()) == [], "the benchmark left its folder behind"
    assert not processes_in(tmp_path), "the benchmark left its server running"
