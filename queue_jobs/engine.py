"""Run a pipeline's jobs: claim each atomically, call its registered step, record the
outcome.

One Celery task (queue_jobs.runner.run_job) runs a pipeline's jobs in turn, without a
trip through the broker between them, until one has to wait or be retried (the task is
then retried for that job), fails, or is a step that hands off (``Step.hand_off``: the
next job goes back to the queue, behind other pipelines' work). The task only translates
the outcome into Celery terms; everything a user or operator sees is written here: on
the Job row, and on its subject through the step's ``on_failure``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from doce.redaction import redact
from queue_jobs import registry
from queue_jobs.models import ACTIVE_STATES, Job, JobState

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0


class StepError(Exception):
    """A step failed. ``retryable`` says whether trying again can help; ``user_message``
    is what the subject's page shows (plain words, never a secret)."""

    retryable = False

    def __init__(self, user_message: str, *, retryable: bool | None = None, kind: str = ""):
        super().__init__(user_message)
        self.user_message = user_message
        self.kind = kind
        if retryable is not None:
            self.retryable = retryable


class StepWait(Exception):
    """The step cannot run yet: it waits for something (a free server slot). It is run
    again after ``retry_in`` seconds; not a failure, so the attempt is not counted, and
    the job stays ``queued`` with ``message`` as what the page shows meanwhile."""

    def __init__(self, message: str, *, retry_in: float):
        super().__init__(message)
        self.message = message
        self.retry_in = retry_in


@dataclass(frozen=True)
class Outcome:
    """``done``: the pipeline goes on (``then``: with this job, from the queue);
    ``retry_in``: run job ``job_id`` again after that many seconds; otherwise the
    pipeline stops (failed, cancelled, or nothing to do). ``run_pipeline`` says which
    job (``job_id``) and what comes next (``then``)."""

    done: bool = False
    retry_in: float | None = None
    detail: str = ""
    job_id: int | None = None
    then: int | None = None


def backoff(attempt: int) -> float:
    return min(BACKOFF_BASE_SECONDS * 2 ** max(attempt - 1, 0), BACKOFF_CAP_SECONDS)


def claim(job_id: int, task_id: str) -> Job | None:
    """Take the job if it still wants running, for the Celery task ``task_id``.

    A job already ``running`` under the same task id is a redelivery after its worker
    died (acks_late): it is taken again, since steps are idempotent. A second message
    for the same pipeline (a duplicate) carries another task id and is refused, so
    one step never runs twice at once.
    """
    now = timezone.now()
    takeable = Q(state__in=(JobState.QUEUED, JobState.RETRYING)) | Q(
        state=JobState.RUNNING, celery_task_id=task_id
    )
    claimed = Job.objects.filter(takeable, id=job_id).update(
        state=JobState.RUNNING,
        celery_task_id=task_id,
        attempts=F("attempts") + 1,
        started_at=Coalesce(F("started_at"), now),
        updated_at=now,
    )
    if not claimed:
        return None
    return Job.objects.select_related("subject").get(id=job_id)


def run_pipeline(job_id: int, *, task_id: str) -> Outcome:
    """Run this job, then the pipeline's next ones in turn while they succeed, in this
    task. A job that already succeeded (this task was redelivered after its worker died
    further on) is passed over; the job its worker was running is taken again."""
    while True:
        outcome = replace(execute(job_id, task_id=task_id), job_id=job_id)
        if not outcome.done:
            return outcome
        following, hand_off = _following(job_id)
        if following is None:
            return outcome
        if hand_off:
            return replace(outcome, then=following)
        job_id = following


def _following(job_id: int) -> tuple[int | None, bool]:
    """The pipeline's next job, and whether this job's step hands off to it."""
    current = Job.objects.filter(pk=job_id).values("pipeline", "position", "type").first()
    if current is None:  # gone with its subject
        return None, False
    following = (
        Job.objects.filter(pipeline=current["pipeline"], position=current["position"] + 1)
        .values_list("pk", flat=True)
        .first()
    )
    return following, registry.get(current["type"]).hand_off


def execute(job_id: int, *, task_id: str) -> Outcome:
    job = claim(job_id, task_id)
    if job is None:
        if Job.objects.filter(id=job_id, state=JobState.SUCCEEDED).exists():
            return Outcome(done=True, detail="already done")
        return Outcome(detail="not runnable (finished, cancelled or taken)")
    if _earlier_step_unfinished(job):
        _finish(job, JobState.CANCELLED, "an earlier step did not succeed")
        return Outcome(detail="cancelled: an earlier step did not succeed")
    definition = registry.get(job.type)
    started = time.monotonic()
    heartbeat = Heartbeat(job.pk, task_id)
    heartbeat.start()
    try:
        definition.run(job)
    except StepWait as exc:
        return _wait(job, exc)
    except StepError as exc:
        return _handle_error(job, exc)
    except Exception as exc:  # a bug or an unexpected failure: stop, say so, keep the trace
        logger.exception("job %s (%s) crashed", job.pk, job.type)
        return _handle_error(
            job, StepError(f"Unexpected error in {definition.label.lower()}: {exc}")
        )
    finally:
        heartbeat.stop()
    if not _finish(job, JobState.SUCCEEDED, ""):
        return Outcome(detail="cancelled while running")
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info("job %s (%s) succeeded in %.0f ms", job.pk, job.type, elapsed_ms)
    return Outcome(done=True)


class Heartbeat(threading.Thread):
    """While a step runs, touch its row every DOCE_JOB_HEARTBEAT_SECONDS: a running job
    whose row stops being touched has lost its worker (killed, say), and the periodic
    recovery (queue_jobs.recovery) runs its pipeline again within a minute instead of
    waiting for the task time limit."""

    def __init__(self, job_id: int, task_id: str) -> None:
        super().__init__(name=f"job-{job_id}-heartbeat", daemon=True)
        self.job_id = job_id
        self.task_id = task_id
        self.interval = settings.DOCE_JOB_HEARTBEAT_SECONDS
        self._stopped = threading.Event()

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                Job.objects.filter(
                    id=self.job_id, state=JobState.RUNNING, celery_task_id=self.task_id
                ).update(updated_at=timezone.now())
        except Exception:  # a missed beat is tolerated: recovery waits for several
            logger.warning("job %s: heartbeat failed", self.job_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's own connections

    def stop(self) -> None:
        self._stopped.set()
        self.join(timeout=5)


def work_waiting(*, besides: Job) -> bool:
    """Another job waits for a worker: it is queued, and its pipeline has reached it
    (it comes first, or the step before it succeeded). A step that waits for something
    can hand itself back to the queue (StepWait) when this is true, and go on waiting
    in its worker when nothing else needs one. (A job that itself waits, queued for a
    later retry, counts too: erring that way costs a trip through the broker, never a
    job left behind a busy worker.)"""
    reached = Job.objects.filter(
        pipeline=OuterRef("pipeline"),
        position=OuterRef("position") - 1,
        state=JobState.SUCCEEDED,
    )
    return (
        Job.objects.filter(state=JobState.QUEUED)
        .exclude(pk=besides.pk)
        .filter(Q(position=0) | Exists(reached))
        .exists()
    )


def _earlier_step_unfinished(job: Job) -> bool:
    return (
        Job.objects.filter(pipeline=job.pipeline, position__lt=job.position)
        .exclude(state=JobState.SUCCEEDED)
        .exists()
    )


def _handle_error(job: Job, exc: StepError) -> Outcome:
    message = redact(exc.user_message)[:2000]
    exc.user_message = message  # what the failure handlers show the user, redacted too
    if exc.retryable and job.attempts < job.max_attempts:
        Job.objects.filter(id=job.pk, state=JobState.RUNNING).update(
            state=JobState.RETRYING, last_error=message, updated_at=timezone.now()
        )
        delay = backoff(job.attempts)
        logger.warning(
            "job %s (%s) attempt %s failed, retrying in %.1f s: %s",
            *(job.pk, job.type, job.attempts, delay, message),
        )
        return Outcome(retry_in=delay, detail=message)
    logger.warning("job %s (%s) failed: %s", job.pk, job.type, message)
    with transaction.atomic():
        if _finish(job, JobState.FAILED, message):
            cancel_pipeline_rest(job, reason=f"stopped: {job.label.lower()} failed")
            job.last_error = message
            on_failure = registry.get(job.type).on_failure
            if on_failure is not None:
                on_failure(job, exc)
    return Outcome(detail=message)


def _wait(job: Job, exc: StepWait) -> Outcome:
    message = redact(exc.message)[:2000]
    if not Job.objects.filter(id=job.pk, state=JobState.RUNNING).update(
        state=JobState.QUEUED,
        attempts=F("attempts") - 1,
        last_error=message,
        updated_at=timezone.now(),
    ):
        return Outcome(detail="cancelled while waiting")
    return Outcome(retry_in=exc.retry_in, detail=message)


def _finish(job: Job, state: str, error: str) -> bool:
    now = timezone.now()
    updates = {"state": state, "finished_at": now, "updated_at": now}
    if error:
        updates["last_error"] = error
    return bool(Job.objects.filter(id=job.pk, state=JobState.RUNNING).update(**updates))


def cancel_pipeline_rest(job: Job, *, reason: str) -> int:
    """Cancel the steps after ``job`` in its pipeline that have not run yet."""
    now = timezone.now()
    return Job.objects.filter(
        pipeline=job.pipeline, position__gt=job.position, state__in=ACTIVE_STATES
    ).update(state=JobState.CANCELLED, last_error=reason, finished_at=now, updated_at=now)
