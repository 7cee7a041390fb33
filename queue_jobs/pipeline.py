"""Create the Job rows of a pipeline and hand them to Celery once they are committed."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import IntegrityError, models, transaction
from django.utils import timezone

from queue_jobs import registry
from queue_jobs.models import ACTIVE_STATES, Job, JobState
from queue_jobs.runner import enqueue_pipeline

logger = logging.getLogger(__name__)


class PipelineBusy(Exception):
    """A pipeline with one of these steps is already queued or running for the subject."""

    def __init__(self, jobs: list[Job]):
        super().__init__("already in progress")
        self.jobs = jobs


def pipeline_enqueue(
    *, subject: models.Model, job_types: Sequence[str], params: dict | None = None
) -> list[Job]:
    """Create one Job per type, in order, and run them in turn after commit.

    Raises PipelineBusy (with the active jobs) when any of these steps is already active
    for the subject: a double click starts one pipeline, not two.
    """
    with transaction.atomic():
        # Serialise pipeline creation per subject (row lock on PostgreSQL; SQLite
        # transactions already take the write lock at BEGIN).
        type(subject).objects.select_for_update().filter(pk=subject.pk).first()
        active = list(
            Job.objects.filter(subject=subject, type__in=job_types, state__in=ACTIVE_STATES)
        )
        if active:
            raise PipelineBusy(active)
        try:
            with transaction.atomic():
                first = Job(subject=subject, type=job_types[0])
                jobs = []
                for position, job_type in enumerate(job_types):
                    job = Job(
                        subject=subject,
                        pipeline=first.pipeline,
                        position=position,
                        type=job_type,
                        max_attempts=registry.get(job_type).max_attempts,
                        params=params or {},
                    )
                    job.save()
                    jobs.append(job)
        except IntegrityError:  # a concurrent request won the unique constraint
            raise PipelineBusy(
                list(Job.objects.filter(subject=subject, state__in=ACTIVE_STATES))
            ) from None
        transaction.on_commit(lambda: enqueue_pipeline(jobs[0].pk))
    return jobs


def jobs_cancel(*, subject: models.Model, reason: str = "cancelled") -> int:
    """Cancel the subject's queued/retrying jobs (a running step finishes, then stops)."""
    now = timezone.now()
    return Job.objects.filter(subject=subject, state__in=ACTIVE_STATES).update(
        state=JobState.CANCELLED, last_error=reason, finished_at=now, updated_at=now
    )
