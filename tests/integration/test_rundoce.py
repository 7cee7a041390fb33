"""The first-run path: `make run` migrates and starts `manage.py rundoce` on the
embedded defaults (SQLite + filesystem broker). One SIGINT stops everything."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import psutil
import pytest
from django.conf import settings

from doce.opencode.runtimes.base import free_port
from tests.conftest import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def first_run_env(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "CELERY_RESULT_BACKEND",
            "SECRET_KEY",
            "DOCE_ENCRYPTION_KEYS",
            "DJANGO_SETTINGS_MODULE",
        }
    }
    env.update({"DEBUG": "true", "DOCE_DATA_DIR": str(tmp_path / "var"), "DOCE_ENV_FILE": ""})
    return env


def test_rundoce_serves_web_and_worker_and_stops_both_on_ctrl_c(first_run_env, tmp_path):
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    migrate = subprocess.run(
        [*manage, "migrate", "--noinput"],
        env=first_run_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrate.returncode == 0, migrate.stderr
    # Not port + 1 for the preview: Linux gives connect() the other parity of the
    # ephemeral range than bind(0), so the port next to a free one is where an outgoing
    # loopback connection sits now and then (the preview's bind failed once in CI). doce's
    # own picker draws from the servers' range, outside the ephemeral one.
    port = free_port()
    preview_port = free_port(avoid={port})
    log_path = tmp_path / "rundoce.log"
    log = open(log_path, "w+")  # noqa: SIM115
    process = subprocess.Popen(
        [
            *manage,
            "rundoce",
            "--port",
            str(port),
            "--preview-port",
            str(preview_port),
            "--concurrency",
            "1",
        ],
        env=first_run_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def announced() -> str | None:
            match = re.search(r"doce is running: open (\S+)", log_path.read_text())
            return match.group(1) if match else None

        url = wait_for(announced, timeout=60, what="rundoce's URL", explain=log_path.read_text)
        assert url == f"http://127.0.0.1:{port}/", log_path.read_text()

        def healthy() -> httpx.Response | None:
            health = httpx.get(url + "healthz", timeout=15)
            return health if health.status_code == 200 else None

        health = wait_for(healthy, timeout=60, what="/healthz", explain=log_path.read_text)
        # The public answer: every component ok (details are for staff).
        assert health.json() == {
            "status": "ok",
            **{part: {"ok": True} for part in health.json() if part != "status"},
        }
        assert {"database", "broker", "opencode", "sandbox", "keyring"} <= set(health.json())
        # The embedded defaults of a first run: SQLite and the filesystem broker, in the
        # data folder (the round trip above went through that broker).
        data_dir = tmp_path / "var"
        assert (data_dir / "doce.sqlite3").is_file()
        assert (data_dir / "broker" / "queue").is_dir()
        first_page = httpx.get(url, timeout=10)
        assert first_page.status_code == 302 and first_page.headers["location"] == "/setup/"

        # The site preview on the port it was given: the bare origin is nobody's site.
        def preview_answer() -> httpx.Response | None:
            with contextlib.suppress(httpx.TransportError):  # still starting
                return httpx.get(f"http://127.0.0.1:{preview_port}/", timeout=10)
            return None

        preview = wait_for(preview_answer, timeout=60, what="the site preview")
        assert preview.status_code == 404

        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 3  # the web server, the worker (+ its pool), sign-ins
        # Sign-ins wait on a queue of their own, in threads: never in the project worker.
        workers = [" ".join(child.cmdline()) for child in children if "celery" in child.cmdline()]
        assert any("--queues celery" in command for command in workers), workers
        assert any(
            "--queues signin" in command and "--pool threads" in command for command in workers
        ), workers

        os.kill(process.pid, signal.SIGINT)  # what Ctrl-C sends
        assert process.wait(timeout=30) == 0
        gone, alive = psutil.wait_procs(children, timeout=5)
        assert alive == []
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        # Shown with a failure (pytest keeps captured output to itself otherwise).
        print(log_path.read_text())
    log_text = log_path.read_text()
    assert "doce stopped." in log_text
    # Then the projects' servers: none were started here, and the command said so.
    assert "Stopped 0 project server(s)." in log_text
