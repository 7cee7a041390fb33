import time
from datetime import timedelta

import pytest
from django.utils import timezone

from projects.jobs import JobType
from projects.services import pipeline_start
from queue_jobs.engine import Heartbeat
from queue_jobs.models import Job, JobState
from queue_jobs.recovery import jobs_recover, jobs_recover_stale
from tests.conftest import deadline_in

pytestmark = pytest.mark.django_db


def test_an_interrupted_pipeline_resumes_from_its_first_unfinished_step(
    project, eager, fake_steps, django_capture_on_commit_callbacks
):
    calls, _ = fake_steps
    with django_capture_on_commit_callbacks(execute=False):  # the message is "lost"
        jobs = pipeline_start(project=project)
    Job.objects.filter(pk=jobs[0].pk).update(state=JobState.SUCCEEDED)
    Job.objects.filter(pk=jobs[1].pk).update(state=JobState.RUNNING, celery_task_id="dead")
    with django_capture_on_commit_callbacks(execute=True):
        assert jobs_recover() == 1
    assert calls == [job.type for job in jobs[1:]]
    assert set(Job.objects.values_list("state", flat=True)) == {JobState.SUCCEEDED}


def test_only_running_jobs_whose_heartbeat_stopped_are_stale(project, settings):
    """Well under a minute, not the task time limit (15 min): a killed worker's pipeline
    goes on at the next recovery round."""
    assert settings.DOCE_JOB_STALE_SECONDS + settings.DOCE_JOB_HEARTBEAT_SECONDS < 60
    job = Job.objects.create(subject=project, type=JobType.RUNTIME_UP, state=JobState.RUNNING)
    Job.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.DOCE_JOB_STALE_SECONDS - 5)
    )
    assert jobs_recover_stale() == 0  # its worker touched it recently: alive
    Job.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.DOCE_JOB_STALE_SECONDS + 1)
    )
    assert jobs_recover_stale() == 1
    assert Job.objects.get(pk=job.pk).state == JobState.RETRYING


@pytest.mark.django_db(transaction=True)
def test_a_running_step_keeps_its_job_fresh(project, settings):
    """The heartbeat touches the row while a step runs (and stops with it)."""
    settings.DOCE_JOB_HEARTBEAT_SECONDS = 0.05
    job = Job.objects.create(
        subject=project, type=JobType.RUNTIME_UP, state=JobState.RUNNING, celery_task_id="t1"
    )
    Job.objects.filter(pk=job.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    stale = Job.objects.get(pk=job.pk).updated_at
    heartbeat = Heartbeat(job.pk, "t1")
    heartbeat.start()
    try:
        deadline = deadline_in(10)
        while Job.objects.get(pk=job.pk).updated_at == stale and time.monotonic() < deadline:
            heartbeat.join(timeout=0.05)  # waits on the thread, not a bare sleep
        assert Job.objects.get(pk=job.pk).updated_at > stale
    finally:
        heartbeat.stop()
    assert not heartbeat.is_alive()
    assert jobs_recover_stale() == 0
