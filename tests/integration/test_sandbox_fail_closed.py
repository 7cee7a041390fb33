"""Fail closed, through the pipeline: a worker that cannot set up the sandbox starts no
OpenCode server; the project ends in error with one line that says what to install."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest

from bench.stub_llm import StubLLM
from doce.opencode.runtimes import LocalRuntime, ServerSpec
from projects import services as project_services
from projects.models import Project
from providers.services import connection_create
from tests.conftest import purge_broker, start_celery_worker, stop_process_group
from tests.integration.conftest import pipeline_report, settled, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_project_fails_closed_with_a_clear_message(alice, tmp_path, django_db_blocker):
    """Through the pipeline: the worker cannot sandbox, so the project ends in error with
    the same line, and no OpenCode server runs for it."""
    purge_broker()
    worker = start_celery_worker(tmp_path / "worker.log", DOCE_BWRAP_BIN="/nonexistent/bwrap")
    try:
        with StubLLM() as stub:
            connection_create(
                user=alice,
                provider_id="stub",
                name="Stub",
                base_url=stub.base_url,
                models=[stub.model],
                api_key="sk-closed-" + "0" * 20,
            )
            project = project_services.project_create(
                owner=alice, prompt="Build a site", model="stub/stub-model"
            )
            wait_for(
                lambda: settled(project),
                what="the pipeline",
                explain=lambda: pipeline_report(project, worker),
            )
        assert project.status == Project.Status.ERROR
        assert "the sandbox cannot be set up" in project.error_message
        assert stub.completions() == []
        state = project_services.runtime_state(project)
        assert state is None or not psutil.pid_exists(state.pid or -1)
    finally:
        stop_process_group(worker)


def _marker_binary(folder: Path) -> Path:
    """An "OpenCode" that only leaves a mark in its working folder (the workspace, which
    the sandbox binds writable) when it runs, then waits."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "opencode"
    path.write_text("#!/bin/sh\necho ran > ./server-ran\nexec sleep 600\n")
    path.chmod(0o755)
    return path


def _failing_pasta(folder: Path) -> Path:
    path = folder / "pasta"
    path.write_text("#!/bin/sh\necho 'pasta: cannot open /dev/net/tun' >&2\nexit 1\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("pasta_works", [False, True], ids=["pasta-fails", "control"])
def test_a_sandbox_that_fails_half_way_never_runs_the_server(tmp_path, settings, pasta_works):
    """The tools are there (the machine check passes) but a step of the set-up fails:
    the supervisor stops everything before the server's program ever runs, and says why
    in the server's log. The control, with the real pasta, shows the mark appears when
    the server does run."""
    settings.DOCE_OPENCODE_BIN = str(_marker_binary(tmp_path / "bin"))
    if not pasta_works:
        settings.DOCE_PASTA_BIN = str(_failing_pasta(tmp_path / "bin"))
    runtime = LocalRuntime()
    spec = ServerSpec(
        name="half-way",
        data_dir=tmp_path / "half-way",
        model="opencode/big-pickle",
        password="pw-" + "h" * 30,
    )
    mark = spec.layout.workspace / "server-ran"
    state = runtime.start(spec)
    try:
        if pasta_works:
            wait_for(mark.exists, timeout=30, what="the server's mark")
            assert runtime.is_alive(state)
            return
        wait_for(lambda: not runtime.is_alive(state), timeout=30, what="the supervisor's exit")
        log = spec.layout.log_file.read_text()
        assert "doce sandbox: pasta exited (1) before it set up the network" in log, log
        assert "the server was not started" in log, log
        assert not mark.exists()
    finally:
        runtime.remove(state)
