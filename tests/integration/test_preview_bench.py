"""bench_preview keeps working (its figures are read by people, not asserted): one round
end to end, with the real binary in its sandbox and Chromium."""

from __future__ import annotations

import json
import threading
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from tests.doce.opencode.servers import require_binary

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.mark.timeout(600)  # a loaded machine: a server, Chromium, two uvicorns
def test_bench_preview_reports_both_figures():
    require_binary()
    out = StringIO()
    failed: list[BaseException] = []

    def run() -> None:
        try:
            call_command("bench_preview", rounds=1, as_json=True, stdout=out)
        except BaseException as exc:  # noqa: BLE001 (reported below)
            failed.append(exc)

    # A thread of its own: Playwright's sync API refuses a thread where another test's
    # browser (the session's `browser` fixture) already runs its event loop.
    thread = threading.Thread(target=run, name="bench-preview")
    thread.start()
    thread.join(timeout=540)
    assert not thread.is_alive(), "bench_preview did not finish"
    assert not failed, failed
    figures = json.loads(out.getvalue())
    assert figures["setup"] == {"rounds": 1}
    for name in ("reload", "shown"):
        assert figures[name]["n"] == 1, name
        assert 0 < figures[name]["median_ms"] < 120_000, name
    assert figures["reload"]["median_ms"] <= figures["shown"]["median_ms"]
    assert not get_user_model().objects.exists()  # its throwaway user is gone
