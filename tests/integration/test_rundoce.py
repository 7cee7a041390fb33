"""The first-run path: `make run` migrates and starts `manage.py rundoce` on the
embedded defaults (SQLite + filesystem broker). One SIGINT stops everything."""

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from django.conf import settings

from tests.conftest import deadline_in

pytestmark = pytest.mark.integration


def _free_ports(count: int) -> list[int]:
    """Ports the kernel hands out to bind(0), held together so they differ. Never
    ``port + 1``: Linux gives connect() the other parity of that range, so the port
    next to a free one is where an outgoing loopback connection sits now and then (its
    bind then fails and rundoce stops everything: seen once in CI)."""
    with contextlib.ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]


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
    port, preview_port = _free_ports(2)
    log = open(tmp_path / "rundoce.log", "w+")  # noqa: SIM115
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
        deadline = deadline_in(60)
        url = None
        while url is None and time.monotonic() < deadline:
            match = re.search(
                r"doce is running: open (\S+)", (tmp_path / "rundoce.log").read_text()
            )
            url = match.group(1) if match else None
            time.sleep(0.2)
        assert url == f"http://127.0.0.1:{port}/", (tmp_path / "rundoce.log").read_text()

        health = None
        while time.monotonic() < deadline:
            health = httpx.get(url + "healthz", timeout=15)
            if health.status_code == 200:
                break
            time.sleep(0.5)
        assert health is not None and health.status_code == 200, health.text
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
        preview = None
        while preview is None and time.monotonic() < deadline:
            try:
                preview = httpx.get(f"http://127.0.0.1:{preview_port}/", timeout=10)
            except httpx.TransportError:  # still starting
                time.sleep(0.2)
        assert preview is not None and preview.status_code == 404

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
        print((tmp_path / "rundoce.log").read_text())
    log_text = (tmp_path / "rundoce.log").read_text()
    assert "doce stopped." in log_text
    # Then the projects' servers: none were started here, and the command said so.
    assert "Stopped 0 project server(s)." in log_text
