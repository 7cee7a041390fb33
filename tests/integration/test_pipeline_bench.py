"""bench_pipeline keeps working (its figures are read by people, not asserted): run the
smallest case end to end, as an operator would, on a fresh data folder with the embedded
database and broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from tests.doce.opencode.fakes import processes_in
from tests.doce.opencode.servers import require_binary

pytestmark = pytest.mark.integration

CLEARED = {
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "SECRET_KEY",
    "DOCE_ENCRYPTION_KEYS",
    "DJANGO_SETTINGS_MODULE",
}


@pytest.mark.timeout(600)  # a loaded CI machine: two servers and a worker start
def test_bench_pipeline_reports_every_figure(tmp_path):
    require_binary()
    env = {key: value for key, value in os.environ.items() if key not in CLEARED}
    env.update(
        {
            "DEBUG": "true",
            "DOCE_DATA_DIR": str(tmp_path / "var"),
            "DOCE_ENV_FILE": "",
            "TMPDIR": str(tmp_path),  # the raw servers' folders land here
        }
    )
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    migrate = subprocess.run(
        [*manage, "migrate", "--noinput"], env=env, capture_output=True, text=True, timeout=120
    )
    assert migrate.returncode == 0, migrate.stderr
    bench = subprocess.run(
        [
            *manage,
            "bench_pipeline",
            "--sizes=1",
            "--rounds=1",
            "--key-edits=1",
            "--concurrency=2",
            "--pool=1",
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=500,
    )
    assert bench.returncode == 0, bench.stderr[-3000:]
    figures = json.loads(bench.stdout.strip().splitlines()[-1])

    assert figures["broker"] == "embedded (filesystem)"
    assert figures["worker_concurrency"] == 2
    start = figures["start_1"]
    for side in ("doce_s", "raw_s", "doce_rss_mb", "raw_rss_mb"):
        assert start[side]["n"] == 1 and start[side]["median"] > 0, side
    assert start["ratio_median"] > 0
    # Side by side: one round gives one pair.
    assert start["doce_minus_raw"]["n"] == 1
    # The part after OpenCode accepted the prompt is part of the whole.
    for side in ("doce", "raw"):
        after = start[f"{side}_after_prompt_s"]
        assert after["n"] == 1 and 0 < after["median"] < start[f"{side}_s"]["median"], side
    # Memory is read after the first reply: a server then holds far more than idle.
    assert start["doce_rss_mb"]["median"] > 150
    # Where the time went: each step of the start-up chain, in order, after submit.
    steps = start["doce_steps_ms"]
    assert [step.split(".")[-1] for step in steps] == [
        "up",
        "wait_healthy",
        "set_provider_credentials",
        "session_create",
        "send_initial_prompt",
    ]
    ends = [end for start_ms, end in steps.values()]
    assert ends == sorted(ends) and ends[-1] < start["doce_s"]["median"] * 1000
    # The warm pool: the same figures, measured from a full, warmed pool of one.
    assert figures["pool"] == 1 and figures["idle_s"] == 0
    warm = figures["warm_1"]
    for side in ("doce_s", "raw_s", "doce_rss_mb", "raw_rss_mb"):
        assert warm[side]["n"] == 1 and warm[side]["median"] > 0, side
    key_edit = figures["key_edit"]
    assert key_edit["doce_s"]["n"] == 1 and key_edit["raw_s"]["n"] == 1
    assert key_edit["wrong_key"] == 0
    assert key_edit["doce_minus_raw"]["n"] == 1
    assert not processes_in(tmp_path), "the benchmark left a server or its worker running"
    assert not list((tmp_path / "var" / "projects").glob("pool-*")), "a pooled server's folder"
