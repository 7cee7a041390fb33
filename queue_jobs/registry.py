"""What each job type does: callers register their steps here (``@step``) when their
app is ready; the engine looks them up by the type stored on the Job row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # annotations only: the models import this module
    from queue_jobs.engine import StepError
    from queue_jobs.models import Job

DEFAULT_MAX_ATTEMPTS = 5


@dataclass(frozen=True)
class Step:
    """``run`` performs one job; ``on_failure`` runs once when a job of this type fails
    for good (e.g. mark its subject failed). After a job of a ``hand_off`` step, the
    pipeline's next job goes back to the queue instead of running at once in the same
    task, so that other pipelines' jobs queued meanwhile are not held behind it."""

    type: str
    run: Callable[[Job], None]
    label: str
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    on_failure: Callable[[Job, StepError], None] | None = None
    hand_off: bool = False


_STEPS: dict[str, Step] = {}


def step(
    job_type: str,
    *,
    label: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    on_failure: Callable[[Any, Any], None] | None = None,
    hand_off: bool = False,
) -> Callable[[Callable], Callable]:
    """Register the function that performs jobs of ``job_type``. ``label`` (default: the
    type's own label when it is a Django choice) is what pages show."""

    def register(function: Callable) -> Callable:
        _STEPS[str(job_type)] = Step(
            type=str(job_type),
            run=function,
            label=label or str(getattr(job_type, "label", job_type)),
            max_attempts=max_attempts,
            on_failure=on_failure,
            hand_off=hand_off,
        )
        return function

    return register


def get(job_type: str) -> Step:
    try:
        return _STEPS[job_type]
    except KeyError:
        raise LookupError(f"no step is registered for job type {job_type!r}") from None


def label(job_type: str) -> str:
    registered = _STEPS.get(job_type)
    return registered.label if registered else job_type
