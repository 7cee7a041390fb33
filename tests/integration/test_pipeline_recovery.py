"""Kill the worker in the middle of a pipeline, start another: the project still comes
up within a minute, with exactly one session and one initial prompt. With the default
settings: on the embedded broker the new worker re-runs unfinished pipelines when it
starts; on Redis the killed task's message stays unacknowledged for an hour (the
visibility timeout), and the job's stopped heartbeat is what beat's recovery notices."""

from __future__ import annotations

import os
import signal
import time

import pytest

from bench.stub_llm import StubLLM
from projects import services as project_services
from projects import steps
from projects.jobs import JobType
from projects.models import Project
from queue_jobs.models import Job, JobState
from tests.conftest import purge_broker, start_celery_worker, stop_process_group
from tests.integration.conftest import (
    REPLY,
    pipeline_report,
    settled,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

RECOVERED_WITHIN = 60  # seconds from the kill to a running project


def test_a_pipeline_survives_a_killed_worker(alice, tmp_path):
    purge_broker()
    first = start_celery_worker(tmp_path / "first.log")
    second = None
    project = None
    with StubLLM(reply=REPLY) as stub:
        try:
            stub_connection(alice, stub)
            project = project_services.project_create(
                owner=alice, prompt="Build a site for my bakery", model="stub/stub-model"
            )
            wait_for(
                lambda: Job.objects.filter(
                    subject=project, type=JobType.WAIT_HEALTHY, state=JobState.RUNNING
                ).exists(),
                what="the wait-for-health step to run",
            )
            os.killpg(first.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            first.wait()

            second = start_celery_worker(tmp_path / "second.log", beat=True)
            wait_for(
                lambda: settled(project),
                timeout=RECOVERED_WITHIN + 30,
                what="the pipeline after the kill",
                explain=lambda: pipeline_report(project, second),
            )
            recovered_in = time.monotonic() - killed_at
            assert project.status == Project.Status.RUNNING, pipeline_report(project)
            assert recovered_in < RECOVERED_WITHIN, f"recovered in {recovered_in:.0f} s"
            wait_for(stub.completions, what="the initial prompt to reach the LLM")

            with project_services.project_client(project) as client:
                assert len(client.session_list()) == 1
                user_messages = [
                    m
                    for m in client.messages(project.bootstrap_session_id)
                    if m["info"]["role"] == "user"
                ]
            assert len(user_messages) == 1

            # Redelivered once more (as acks_late may do): still one session, one prompt.
            Project.objects.filter(pk=project.pk).update(
                bootstrap_session_id="", initial_prompt_sent=False
            )
            job = Job.objects.get(subject=project, type=JobType.SESSION_CREATE)
            job.attempts += 1  # as the claim of a redelivered message counts it
            steps.session_create(job)
            job.subject.refresh_from_db()
            steps.send_initial_prompt(job)
            project.refresh_from_db()
            with project_services.project_client(project) as client:
                assert len(client.session_list()) == 1
                roles = [m["info"]["role"] for m in client.messages(project.bootstrap_session_id)]
            assert roles.count("user") == 1
            assert project.initial_prompt_sent
        finally:
            if project is not None:
                project_services.server_stop(project=project)
            stop_process_group(first)
            if second is not None:
                stop_process_group(second)
