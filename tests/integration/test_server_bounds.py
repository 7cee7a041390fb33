"""One agent cannot starve the others: every OpenCode server runs within its bounds.

Everything real: a Celery worker, the pinned OpenCode binary in its sandbox, and stub
LLMs that answer a marked message with a ``bash`` tool call, as a prompt-injected agent
would run a script. Bob's agent tries to start 1,500 processes and to fill 6 GB of
memory; with doce's defaults it gets no further than its process bound and its server
is stopped at its memory bound, and Bob's project page says so within 5 seconds of the
server's death. Alice's project, beside it, still gets her prompt to her LLM. A server
whose files pass the disk bound is stopped too, and says why.
"""

from __future__ import annotations

import re
import secrets
import time
from pathlib import Path

import psutil
import pytest

from bench.stub_llm import StubLLM
from doce.opencode.runtimes import CustomProvider, LocalRuntime, ServerSpec
from doce.opencode.runtimes.limits import human_bytes, server_limits
from projects import services as project_services
from projects.models import Project
from tests.conftest import deadline_in
from tests.integration.conftest import (
    pipeline_report,
    project_running,
    replies,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Children that stay until the parent has counted (they read a pipe the parent holds
# open, and leave when it exits): the count is what the bound let start.
FORK_BOMB = """python3 - <<'PYEOF'
import os
held, hold = os.pipe()
started = 0
error = ""
for _ in range(1500):
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc.strerror
        break
    if pid == 0:
        os.close(hold)
        os.read(held, 1)
        os._exit(0)
    started += 1
print(f"started {started} of 1500 ({error or 'no error'})", flush=True)
PYEOF"""
# Touched memory (a repeated byte is written, not a lazily zeroed page), 6 GB in all.
MEMORY_HOG = """python3 - <<'PYEOF'
held = []
for step in range(96):
    held.append(b"\\x01" * (64 * 1024 * 1024))
print("allocated", 6, "GB", flush=True)  # the words apart: an echoed command is no proof
PYEOF"""
# The page polls a running project's status every 2 s: the project must be marked
# within 3 s of the death for the user to see why within 5.
MARKED_WITHIN = 3.0


def _wait_gone(pid: int, timeout: float) -> float:
    """When the process ``pid`` was seen gone (monotonic), polling often. Already gone
    (on a busy machine the bound can act before the caller gets here): now."""
    deadline = deadline_in(timeout)
    try:
        process = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return time.monotonic()
    while time.monotonic() < deadline:
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                return time.monotonic()
        except psutil.NoSuchProcess:
            return time.monotonic()
        try:
            process.wait(timeout=0.05)
        except psutil.TimeoutExpired:
            continue
        return time.monotonic()
    raise AssertionError(f"the server (pid {pid}) was not stopped")


def test_a_hungry_agent_is_bounded_by_the_defaults_and_its_user_sees_why(
    alice, bob, client, celery_worker_process, cleanup_projects
):
    limits = server_limits()  # the defaults, as the worker computes them
    assert limits.pids < 1500 and limits.memory_bytes < 6 * 1024**3
    with (
        StubLLM(reply="Alice's site is ready.") as alice_stub,
        StubLLM(reply="Done.", commands={"fork": FORK_BOMB, "hog": MEMORY_HOG}) as bob_stub,
    ):
        stub_connection(alice, alice_stub)
        stub_connection(bob, bob_stub)
        alice_project = project_running(alice, "Build Alice's bakery site", celery_worker_process)
        bob_project = project_running(bob, "Please [[fork]]", celery_worker_process)

        # Processes: the bound stops the fork bomb; the server itself carries on.
        outputs = wait_for(
            bob_stub.tool_outputs,
            timeout=120,
            what="the output of Bob's fork bomb",
            explain=lambda: pipeline_report(bob_project, celery_worker_process),
        )
        found = re.search(r"started (\d+) of 1500 \((.*)\)", outputs[0])
        assert found, outputs[0][:2000]
        assert int(found.group(1)) < limits.pids, outputs[0][:2000]
        assert "Resource temporarily unavailable" in found.group(2)
        wait_for(lambda: len(replies(bob_project)) >= 2, what="Bob's agent's turn to end")

        # Memory: the server is stopped at its bound, and Bob's page says why in time.
        bob_project.refresh_from_db()
        supervisor = bob_project.runtime_state["pid"]
        project_services.message_send(project=bob_project, text="Now [[hog]]")
        died_at = _wait_gone(supervisor, timeout=120)
        client.force_login(bob)
        status_url = f"/projects/{bob_project.pk}/status/"
        expected = f"stopped: it reached its memory bound of {human_bytes(limits.memory_bytes)}"
        wait_for(
            lambda: expected in client.get(status_url).content.decode(),
            timeout=30,
            what="the reason on Bob's project page",
            explain=lambda: pipeline_report(bob_project, celery_worker_process),
        )
        assert time.monotonic() - died_at < MARKED_WITHIN
        bob_project.refresh_from_db()
        assert bob_project.status == Project.Status.ERROR
        log = (Path(bob_project.data_dir) / "opencode.log").read_text()
        assert f"doce sandbox: the server was stopped: {expected[9:]}." in log
        assert "allocated 6 GB" not in "\n".join(bob_stub.tool_outputs())

        # Alice's project, beside it, still works: her next prompt reaches her LLM.
        alice_project.refresh_from_db()
        assert alice_project.status == Project.Status.RUNNING
        before = len(alice_stub.completions())
        project_services.message_send(project=alice_project, text="Add an opening-hours page")
        wait_for(
            lambda: len(alice_stub.completions()) > before,
            timeout=60,
            what="Alice's prompt at her LLM",
            explain=lambda: pipeline_report(alice_project, celery_worker_process),
        )


def test_a_server_whose_files_pass_the_disk_bound_is_stopped_and_says_why(tmp_path, settings, stub):
    settings.DOCE_SERVER_DISK_LIMIT_MB = "200"
    runtime = LocalRuntime()
    spec = ServerSpec(
        name="disk-bound",
        data_dir=tmp_path / "disk-bound",
        model=f"stub/{stub.model}",
        password=secrets.token_urlsafe(24),
        custom_providers=(CustomProvider("stub", "Stub", stub.base_url, [stub.model]),),
    )
    state = runtime.start(spec)
    try:
        runtime.wait_healthy(state, spec.password)
        with open(spec.layout.workspace / "filler.bin", "wb") as handle:
            for _ in range(250):  # what an agent's download would leave
                handle.write(secrets.token_bytes(1024 * 1024))
        _wait_gone(state.pid, timeout=30)
        assert runtime.stop_reason(state) == "its files reached their disk bound of 200 MiB"
        assert "disk bound of 200 MiB" in spec.layout.log_tail(5)
    finally:
        runtime.stop(state)
