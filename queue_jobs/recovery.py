"""Find pipelines whose Celery message was lost and run them again from where they were.

With Redis, acks_late redelivers a task whose worker died (after the visibility
timeout). The embedded filesystem broker deletes a message as soon as a worker reads
it, so a killed worker loses it: a worker that starts on the embedded broker therefore
re-enqueues what the previous one left unfinished. On any broker, a job ``running`` for
longer than the task time limit has certainly lost its worker and is re-enqueued by the
periodic reconciler.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from queue_jobs.models import ACTIVE_STATES, Job, JobState
from queue_jobs.runner import enqueue_pipeline

logger = logging.getLogger(__name__)


def jobs_recover(*, running_before=None) -> int:
    """Re-enqueue each pipeline that has unfinished jobs, from its first unfinished job.

    ``running_before``: only pipelines whose running job was last touched before this
    time (None: every unfinished pipeline, for a worker start on the embedded broker).
    Returns the number of pipelines re-enqueued.
    """
    unfinished = Job.objects.filter(state__in=ACTIVE_STATES)
    if running_before is not None:
        stale = unfinished.filter(state=JobState.RUNNING, updated_at__lt=running_before)
        pipelines = set(stale.values_list("pipeline", flat=True))
    else:
        pipelines = set(unfinished.values_list("pipeline", flat=True))
    recovered = 0
    for pipeline in pipelines:
        with transaction.atomic():
            jobs = list(
                Job.objects.select_for_update()
                .filter(pipeline=pipeline, state__in=ACTIVE_STATES)
                .order_by("position")
            )
            if not jobs:
                continue
            # A fresh task carries a new task id: release the running job to it.
            Job.objects.filter(pk__in=[j.pk for j in jobs], state=JobState.RUNNING).update(
                state=JobState.RETRYING, updated_at=timezone.now()
            )
            job_ids = [job.pk for job in jobs]
            transaction.on_commit(lambda first=job_ids[0]: enqueue_pipeline(first))
        recovered += 1
        logger.warning("re-enqueued interrupted pipeline %s (jobs %s)", pipeline, job_ids)
    return recovered


def jobs_recover_stale() -> int:
    """Pipelines whose running job's heartbeat stopped (engine.Heartbeat touches the row
    while the step runs): its worker is gone."""
    limit = timedelta(seconds=settings.DOCE_JOB_STALE_SECONDS)
    return jobs_recover(running_before=timezone.now() - limit)
