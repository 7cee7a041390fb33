"""Create the Job rows of a pipeline and hand them to Celery once they are committed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import IntegrityError, transaction

from queue_jobs.models import ACTIVE_STATES, START_PIPELINE, Job, JobState, JobType

logger = logging.getLogger(__name__)

#: Credentials get 3 attempts (DESIGN.md); other steps a few more, since a server that is
#: still starting answers "connection refused" for a while.
MAX_ATTEMPTS = {JobType.SET_CREDENTIALS: 3, JobType.REINJECT_CREDENTIALS: 3}
DEFAULT_MAX_ATTEMPTS = 5


class PipelineBusy(Exception):
    """A pipeline with one of these steps is already queued or running for the project."""

    def __init__(self, jobs: list[Job]):
        super().__init__("already in progress")
        self.jobs = jobs


def pipeline_enqueue(*, project, job_types: Sequence[str], params: dict | None = None) -> list[Job]:
    """Create one Job per type, in order, and run them as a Celery chain after commit.

    Raises PipelineBusy (with the active jobs) when any of these steps is already active
    for the project: a double click starts one pipeline, not two.
    """
    from projects.models import Project
    from queue_jobs.tasks import enqueue_jobs

    with transaction.atomic():
        # Serialise pipeline creation per project (row lock on PostgreSQL; SQLite
        # transactions already take the write lock at BEGIN).
        Project.objects.select_for_update().filter(pk=project.pk).first()
        active = list(
            Job.objects.filter(project=project, type__in=job_types, state__in=ACTIVE_STATES)
        )
        if active:
            raise PipelineBusy(active)
        try:
            with transaction.atomic():
                first = Job(project=project, type=job_types[0])
                jobs = []
                for position, job_type in enumerate(job_types):
                    job = Job(
                        project=project,
                        pipeline=first.pipeline,
                        position=position,
                        type=job_type,
                        max_attempts=MAX_ATTEMPTS.get(job_type, DEFAULT_MAX_ATTEMPTS),
                        params=params or {},
                    )
                    job.save()
                    jobs.append(job)
        except IntegrityError:  # a concurrent request won the unique constraint
            raise PipelineBusy(
                list(Job.objects.filter(project=project, state__in=ACTIVE_STATES))
            ) from None
        job_ids = [job.pk for job in jobs]
        transaction.on_commit(lambda: enqueue_jobs(job_ids))
    return jobs


def pipeline_start(*, project) -> list[Job]:
    return pipeline_enqueue(project=project, job_types=START_PIPELINE)


def jobs_cancel(*, project, reason: str = "cancelled") -> int:
    """Cancel the project's queued/retrying jobs (a running step finishes, then stops)."""
    from django.utils import timezone

    now = timezone.now()
    return Job.objects.filter(project=project, state__in=ACTIVE_STATES).update(
        state=JobState.CANCELLED, last_error=reason, finished_at=now, updated_at=now
    )
