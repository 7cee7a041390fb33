from datetime import timedelta

import pytest
from django.utils import timezone

from projects.jobs import JobType
from projects.services import pipeline_start
from queue_jobs.models import Job, JobState
from queue_jobs.recovery import jobs_recover, jobs_recover_stale

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


def test_only_jobs_running_past_the_time_limit_are_stale(project, settings):
    job = Job.objects.create(subject=project, type=JobType.RUNTIME_UP, state=JobState.RUNNING)
    assert jobs_recover_stale() == 0
    Job.objects.filter(pk=job.pk).update(
        updated_at=timezone.now() - timedelta(seconds=settings.CELERY_TASK_TIME_LIMIT + 120)
    )
    assert jobs_recover_stale() == 1
    assert Job.objects.get(pk=job.pk).state == JobState.RETRYING
