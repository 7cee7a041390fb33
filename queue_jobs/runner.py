"""The Celery side of the engine: one task runs a pipeline's jobs in order, from the
one it is given (queue_jobs.engine.run_pipeline). Tasks take job ids only (never a
secret)."""

from __future__ import annotations

from celery import shared_task

from queue_jobs import engine


@shared_task(bind=True, name="queue_jobs.run_job", max_retries=None, ignore_result=True)
def run_job(self, job_id: int) -> None:
    outcome = engine.run_pipeline(job_id, task_id=self.request.id or "")
    if outcome.retry_in is not None:
        # The same task, again later, from the job that has to wait or be retried.
        raise self.retry(args=(outcome.job_id,), countdown=outcome.retry_in)
    if outcome.then is not None:
        run_job.delay(outcome.then)
    # Otherwise the pipeline is done, or stopped: the job rows say why.


def enqueue_pipeline(first_job_id: int) -> None:
    """Run a pipeline's jobs one after the other, from this one, each only if the
    previous one succeeded."""
    run_job.delay(first_job_id)
