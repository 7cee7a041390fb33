"""Shared fixtures: named users, a real Celery worker, a real browser, the job engine
with fake steps."""

from __future__ import annotations

import gc
import os
import runpy
import subprocess
import sys
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psutil
import pytest
from django.conf import settings
from django.db import connection

from doce import bootstrap
from doce.celery import app
from doce.processes import kill_group, stop_gracefully
from projects.models import Project
from queue_jobs import engine, registry
from tests.factories import UserFactory

CHROMIUM = os.environ.get("DOCE_TEST_CHROMIUM", "/usr/bin/chromium")
#: Every deadline a test waits on is multiplied by this one number: on a slow or busy
#: machine, set DOCE_TEST_TIMEOUT_SCALE=2 (say) rather than editing timeouts.
TIMEOUT_SCALE = float(os.environ.get("DOCE_TEST_TIMEOUT_SCALE") or 1)


def deadline_in(seconds: float) -> float:
    """A ``time.monotonic()`` deadline ``seconds`` away, scaled by TIMEOUT_SCALE."""
    return time.monotonic() + seconds * TIMEOUT_SCALE


def wait_for(predicate, *, timeout: float = 90, what: str = "condition", explain=None):
    """``predicate()``'s first truthy value, asked every 0.2 s until the (scaled)
    deadline; else an AssertionError naming ``what`` (and ``explain()``'s text)."""
    deadline = deadline_in(timeout)
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f"\n{explain()}" if explain else ""))


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture
def alice(db):
    return UserFactory(username="alice")


@pytest.fixture
def bob(db):
    return UserFactory(username="bob")


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


def database_url(settings_dict: dict) -> str:
    """A DATABASE_URL for the (test) database this process uses, for subprocesses."""
    if settings_dict["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = quote(settings_dict.get("USER") or "")
    password = settings_dict.get("PASSWORD") or ""
    credentials = f"{user}:{quote(password)}@" if password else (f"{user}@" if user else "")
    return (
        f"postgres://{credentials}{settings_dict.get('HOST') or '127.0.0.1'}:"
        f"{settings_dict.get('PORT') or 5432}/{settings_dict['NAME']}"
    )


def _clean_env(tmp_path, env: dict[str, str]) -> dict[str, str]:
    """This run's environment without its key, database, broker or settings module, a
    data folder of its own and no .env file, plus ``env``."""
    base = {
        key: value
        for key, value in os.environ.items()
        if key
        not in {
            "SECRET_KEY",
            "DOCE_ENCRYPTION_KEYS",
            "DEBUG",
            "DATABASE_URL",
            "CELERY_BROKER_URL",
            "DJANGO_SETTINGS_MODULE",
            "DOCE_RUNTIME",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        }
    }
    base.update({"DOCE_DATA_DIR": str(tmp_path), "DOCE_ENV_FILE": ""})
    base.update(env)
    return base


def run_manage(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    """Run manage.py in a clean environment (no key, no database from this run)."""
    return subprocess.run(
        [sys.executable, str(settings.BASE_DIR / "manage.py"), *args],
        env=_clean_env(tmp_path, env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_from(tmp_path, **env) -> dict[str, Any]:
    """doce/settings.py run in this process as ``run_manage`` would start it (the same
    clean environment plus ``env``): the settings it makes, by name. Raises what
    start-up raises (ImproperlyConfigured). Seconds cheaper than a ``manage.py``; what
    Django then does with the settings is tested in this process with them."""
    saved, messages = dict(os.environ), list(bootstrap.PENDING_MESSAGES)
    os.environ.clear()
    os.environ.update(_clean_env(tmp_path, env))
    try:
        return runpy.run_path(str(settings.BASE_DIR / "doce" / "settings.py"))
    finally:
        os.environ.clear()
        os.environ.update(saved)
        bootstrap.PENDING_MESSAGES[:] = messages  # said at start-up: this run's are said


def subprocess_env(**extra: str) -> dict[str, str]:
    """This test run's environment for a doce subprocess, on the test database."""
    from django.db import connection

    env = os.environ.copy()
    env["DJANGO_SETTINGS_MODULE"] = "doce.settings"
    env["DATABASE_URL"] = database_url(connection.settings_dict)
    env.update(extra)
    return env


def stop_process_group(
    process: subprocess.Popen, timeout: float = 10, *, graceful: bool = False
) -> None:
    """Stop a test's subprocess (a Celery worker) and the processes it started. Once its
    tests are done it is killed at once: an idle worker's own shutdown takes about 6 s.
    ``graceful``: as `make run` stops it (doce.processes), for its warm shutdown (a task
    in flight finishes, e.g. a pooled server being started gets its row)."""
    if graceful:
        stop_gracefully([process], grace=timeout)
    else:
        kill_group(process)


def start_celery_worker(
    log_path: Path,
    *,
    beat: bool = False,
    queue: str = "celery",
    pool_args: tuple[str, ...] = ("--concurrency", "2"),
    **extra_env: str,
) -> subprocess.Popen:
    """Start a real Celery worker subprocess on the configured broker and the test
    database, and wait until it answers a ping task. ``beat``: with the periodic
    scheduler in it, as `make run` has. ``queue``: the one it consumes (project work by
    default; sign-ins have their own, see ``start_signin_worker``)."""
    from doce.tasks import ping

    log = open(log_path, "w")  # noqa: SIM115 (the child keeps writing to it)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "doce",
            "worker",
            "--loglevel",
            "INFO",
            "--queues",
            queue,
            *pool_args,
            "--hostname",
            f"test-{queue}-{uuid.uuid4().hex[:8]}@%h",
            *(["--beat", "--schedule", str(log_path.with_suffix(".schedule"))] if beat else []),
        ],
        env=subprocess_env(**extra_env),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=settings.BASE_DIR,
    )
    log.close()
    process.log_path = log_path
    deadline = deadline_in(90)
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"Celery worker exited: {Path(log_path).read_text()[-3000:]}")
        try:
            answer = ping.apply_async(expires=10, queue=queue).get(timeout=5, interval=0.05)
            if answer == "pong":
                return process
        except Exception:
            if time.monotonic() > deadline:
                stop_process_group(process)
                raise RuntimeError(
                    f"Celery worker never answered: {Path(log_path).read_text()[-3000:]}"
                ) from None


def start_signin_worker(log_path: Path, **extra_env: str) -> subprocess.Popen:
    """The sign-in worker as `make run` starts it: the sign-in queue, on threads, one per
    sign-in allowed at once."""
    return start_celery_worker(
        log_path,
        queue=settings.DOCE_OAUTH_QUEUE,
        pool_args=("--pool", "threads", "--concurrency", str(settings.DOCE_OAUTH_MAX_FLOWS)),
        **extra_env,
    )


def purge_broker() -> None:
    """Drop messages an earlier, interrupted run left in a shared broker (Redis)."""
    from doce.celery import app

    if not settings.DOCE_EMBEDDED_BROKER:
        app.control.purge()


@pytest.fixture(scope="module")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory):
    """A real Celery worker for the tests of one module (modules that need to control
    their own workers, e.g. kill one, then run without this one)."""
    purge_broker()
    process = start_celery_worker(tmp_path_factory.mktemp("worker") / "worker.log")
    yield process
    stop_process_group(process)


@pytest.fixture(scope="session", autouse=True)
def _test_database_released(django_db_setup, django_db_blocker):
    """At the end of the session, before pytest-django drops a PostgreSQL test database:
    wait (with a deadline) until the processes the tests started and killed have let go
    of it, then end any session still open. PostgreSQL refuses to drop a database others
    are connected to, and pytest-django would only warn and leave it.

    Sessions of this very process are ended without waiting: the connections of threads
    that ran async code (asgiref's executors, event loops' worker threads), which would
    only close when the process exits. Another process's session left past the deadline
    is named in a warning: something the tests started outlived them."""
    yield
    if connection.vendor != "postgresql":
        return
    others = """SELECT pid, client_port, application_name, state, left(query, 80)
                FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid()"""
    gc.collect()  # the connections of ended threads close when they are collected
    with django_db_blocker.unblock(), connection.cursor() as cursor:

        def of_other_processes() -> list[tuple]:
            own = {c.laddr.port for c in psutil.Process().net_connections("tcp") if c.laddr}
            cursor.execute(others)
            return [row for row in cursor.fetchall() if row[1] not in own]

        try:
            wait_for(
                lambda: not of_other_processes(),
                timeout=20,
                what="other processes' sessions on the test database",
            )
        except AssertionError:
            warnings.warn(
                pytest.PytestWarning(
                    f"ended sessions other processes left on the test database: "
                    f"{of_other_processes()}"
                ),
                stacklevel=1,
            )
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (its own browser download is not used)."""
    from playwright.sync_api import sync_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: run `make test` (it installs Debian's chromium).")
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser):
    """A fresh page; any Content-Security-Policy violation it reports fails the test (every
    doce page must work under the policy: no inline script, no eval, no inline style)."""
    context = browser.new_context()
    context.set_default_timeout(15_000)
    page = context.new_page()
    violations: list[str] = []

    def on_console(message) -> None:
        if message.type == "error" and "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    yield page
    context.close()
    assert not violations, f"Content-Security-Policy violations: {violations}"


# --- the job engine, run eagerly with fake steps (tests/queue_jobs, tests/projects) ---------
@pytest.fixture
def eager(monkeypatch):
    monkeypatch.setitem(app.conf, "task_always_eager", True)
    monkeypatch.setitem(app.conf, "task_eager_propagates", False)


@pytest.fixture
def fake_steps(monkeypatch):
    """Replace every step with a recorder; tests set ``behaviour[type]`` to a callable."""
    calls: list[str] = []
    behaviour: dict[str, object] = {}

    def make(job_type):
        def perform(job):
            calls.append(job_type)
            action = behaviour.get(job_type)
            if action is not None:
                action(job)

        return perform

    for job_type, step in list(registry._STEPS.items()):
        monkeypatch.setitem(registry._STEPS, job_type, replace(step, run=make(job_type)))
    monkeypatch.setattr(engine, "backoff", lambda attempt: 0)
    return calls, behaviour


@pytest.fixture
def project(alice):
    """A project with no server: the subject of pipeline unit tests."""
    return Project.objects.create(
        owner=alice,
        name="Bakery",
        prompt="Build a site for my bakery",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password="pw-" + "x" * 30,
    )


@pytest.fixture(autouse=True)
def _fresh_endpoint_answers():
    """doce.endpoints keeps resolved names for 30 s: tests that fake DNS start afresh."""
    from doce import endpoints

    endpoints._resolve_name.cache_clear()
    yield


# --- screenshots of the main pages, for reviewers ---------------------------------------------
#: Where the browser tests save their screenshots (`make test` keeps them; git ignores them).
SCREENSHOTS = Path(
    os.environ.get("DOCE_TEST_SCREENSHOTS") or settings.BASE_DIR / "test-results" / "screenshots"
)


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot of ``page`` as ``SCREENSHOTS/<name>.png`` (the folder is
    created if missing), so a reviewer sees doce's pages without running it."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
