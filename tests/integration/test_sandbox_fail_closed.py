"""Fail closed, through the pipeline: a worker that cannot set up the sandbox starts no
OpenCode server; the project ends in error with one line that says what to install."""

from __future__ import annotations

import psutil
import pytest

from doce.stub_llm import StubLLM
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
