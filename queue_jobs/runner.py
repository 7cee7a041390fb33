"""The Celery side of the engine: one task runs one job, a chain runs a pipeline's jobs
in order. Tasks take job ids only (never a secret)."""

from __future__ import annotations

from celery import chain, shared_task
from celery.exceptions import Ignore

from queue_jobs import engine


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
