"""Celery tasks: they take ids only (never a secret), and call the engine."""

from __future__ import annotations

import logging

from celery import chain, shared_task
from celery.exceptions import Ignore
from celery.signals import worker_ready

from queue_jobs import engine

logger = logging.getLogger(__name__)


@shared_task(bind=True, name="queue_jobs.run_job", max_retries=None, ignore_result=True)
def run_job(self, job_id: int) -> None:
    outcome = engine.execute(job_id, task_id=self.request.id or "")
    if outcome.retry_in is not None:
        # Celery keeps the rest of the chain on the retried message.
        raise self.retry(countdown=outcome.retry_in)
    if not outcome.done:
        # Stop the chain: the job row already says why (failed / cancelled).
        raise Ignore()


def enqueue_jobs(job_ids: list[int]) -> None:
    """Run the jobs one after the other, each only if the previous one succeeded."""
    signatures = [run_job.si(job_id) for job_id in job_ids]
    (chain(*signatures) if len(signatures) > 1 else signatures[0]).apply_async()


@shared_task(name="queue_jobs.reconcile", ignore_result=True)
def reconcile() -> None:
    from queue_jobs.reconcile import projects_reconcile, projects_stop_idle
    from queue_jobs.recovery import jobs_recover_stale

    jobs_recover_stale()
    projects_reconcile()
    projects_stop_idle()


@worker_ready.connect
def _recover_lost_messages(sender=None, **kwargs) -> None:
    """The embedded broker forgets a message once read: after a crash, the jobs it
    carried are only known from their rows."""
    from django.conf import settings

    if settings.DOCE_EMBEDDED_BROKER:
        from queue_jobs.recovery import jobs_recover

        jobs_recover()
