"""Periodic housekeeping of projects (scheduled by beat): notice servers that died, stop
the servers of failed projects, stop projects left idle, keep the warm pool full. Takes
and returns no secret."""

from __future__ import annotations

import time

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from projects import pool
from projects.reconcile import projects_reconcile, projects_stop_failed, projects_stop_idle
from projects.recorder import recorder_spawn
from projects.tokens import oauth_tokens_watch


@shared_task(name="projects.reconcile", ignore_result=True)
def reconcile() -> None:
    projects_reconcile()  # running projects whose server died turn to error first,
    projects_stop_failed()  # so their leftovers (a container, a record) are cleaned here
    projects_stop_idle()
    pool_fill.delay()  # pooled servers that died are replaced


@shared_task(name="projects.watch_oauth_tokens", acks_late=False, ignore_result=True)
def watch_oauth_tokens() -> int:
    """OAuth tokens a project's OpenCode refreshed reach the connection and the user's
    other projects (projects.tokens; scheduled by beat every few seconds)."""
    return oauth_tokens_watch()


@shared_task(name="projects.pool_fill", acks_late=False, ignore_result=True)
def pool_fill() -> int:
    """Bring the warm pool to its size (projects.pool): at worker start, after a claim,
    with the reconciler. The servers it starts are warmed by ``pool_warm``."""
    started = pool.pool_fill()
    for pk in started:
        pool_warm.apply_async((pk,), countdown=pool.WARM_RETRY_SECONDS)
    return len(started)


def pool_refill_soon() -> None:
    """A claimed server's replacement, once its project's prompt is on its way."""
    not_after = time.time() + pool.REFILL_DEFER_MAX_SECONDS
    pool_refill.apply_async((not_after,), countdown=pool.REFILL_DELAY_SECONDS)


@shared_task(name="projects.pool_refill", acks_late=False, ignore_result=True)
def pool_refill(not_after: float) -> int:
    """Fill the pool once the CPUs are not busy (a burst's prompts are still on their
    way to their LLM: a server starting now would slow them down), or at ``not_after``
    (a Unix time) at the latest."""
    if time.time() < not_after and pool.machine_busy():
        pool_refill.apply_async((not_after,), countdown=pool.REFILL_RETRY_SECONDS)
        return 0
    return pool_fill()


@shared_task(name="projects.pool_warm", acks_late=False, ignore_result=True)
def pool_warm(pk: int) -> str:
    """Warm a starting pooled server once it answers; until then ask again shortly
    (no worker waits for a server to start)."""
    outcome = pool.server_warm(pk)
    if outcome is pool.Warm.LATER:
        pool_warm.apply_async((pk,), countdown=pool.WARM_RETRY_SECONDS)
    else:
        pool_fill.delay()  # the next start, or another one for a server that died
    return outcome.value


@worker_ready.connect
def _fill_pool_on_start(sender=None, **kwargs) -> None:
    pool_fill.delay()


@worker_ready.connect
def _record_on_start(sender=None, **kwargs) -> None:
    """The project worker keeps the conversations (projects.recorder); the sign-in
    worker does not."""
    queues = {queue.name for queue in getattr(getattr(sender, "task_consumer", None), "queues", [])}
    if not queues or settings.DOCE_OAUTH_QUEUE not in queues or len(queues) > 1:
        recorder_spawn()
