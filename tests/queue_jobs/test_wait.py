"""A step that has to wait (queue_jobs.engine.StepWait) is run again later without
spending an attempt, and its job says what it waits for."""

import pytest

from projects.jobs import JobType
from projects.services import pipeline_start
from queue_jobs import engine
from queue_jobs.engine import StepWait
from queue_jobs.models import Job, JobState

pytestmark = pytest.mark.django_db


def test_a_waiting_step_is_retried_later_without_counting_an_attempt(project, fake_steps):
    _, behaviour = fake_steps
    job = pipeline_start(project=project)[0]

    def wait(job):
        raise StepWait("Waiting for a free server slot: 2 ahead.", retry_in=1.5)

    behaviour[JobType.RUNTIME_UP] = wait
    for attempt in range(job.max_attempts + 2):  # more times than it may fail
        outcome = engine.execute(job.pk, task_id=f"task-{attempt}")
        assert outcome.retry_in == 1.5
        job.refresh_from_db()
        assert (job.state, job.attempts) == (JobState.QUEUED, 0)
        assert job.last_error == "Waiting for a free server slot: 2 ahead."

    behaviour[JobType.RUNTIME_UP] = None
    assert engine.execute(job.pk, task_id="task-last").done
    job.refresh_from_db()
    assert (job.state, job.attempts) == (JobState.SUCCEEDED, 1)


def test_a_job_cancelled_while_it_waited_is_not_run_again(project, fake_steps):
    _, behaviour = fake_steps
    job = pipeline_start(project=project)[0]

    def wait_and_get_cancelled(job):
        Job.objects.filter(pk=job.pk).update(state=JobState.CANCELLED)
        raise StepWait("Waiting.", retry_in=1)

    behaviour[JobType.RUNTIME_UP] = wait_and_get_cancelled
    outcome = engine.execute(job.pk, task_id="task")
    assert outcome.retry_in is None and not outcome.done
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED
