"""Periodic and start-up recovery of pipelines whose Celery message was lost."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from queue_jobs.recovery import jobs_recover, jobs_recover_stale
from queue_jobs.runner import run_job  # noqa: F401  (registers the task with the worker)


@shared_task(name="queue_jobs.recover_stale", ignore_result=True)
def recover_stale() -> int:
    """Re-enqueue pipelines whose running job outlived any task's time limit."""
    return jobs_recover_stale()


@worker_ready.connect
def _recover_lost_messages(sender=None, **kwargs) -> None:
    """The embedded broker forgets a message once read: after a crash, the jobs it
    carried are only known from their rows."""
    if settings.DOCE_EMBEDDED_BROKER:
        jobs_recover()
