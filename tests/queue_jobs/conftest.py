"""Unit tests of the pipeline run Celery eagerly with fake step functions; the real
steps against a real OpenCode server are in tests/integration/test_pipeline*.py."""

from __future__ import annotations

import pytest

from doce.celery import app
from projects.models import Project
from queue_jobs import engine


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

    for job_type in list(engine._STEPS):
        monkeypatch.setitem(engine._STEPS, job_type, make(job_type))
    monkeypatch.setattr(engine, "backoff", lambda attempt: 0)
    return calls, behaviour


@pytest.fixture
def project(alice):
    return Project.objects.create(
        owner=alice,
        name="Bakery",
        prompt="Build a site for my bakery",
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password="pw-" + "x" * 30,
    )
