"""Periodic housekeeping: notice servers that died, stop the servers of failed projects,
stop projects left idle."""

from __future__ import annotations

import logging
import signal
from datetime import timedelta

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from doce import capacity
from doce.opencode.runtimes import RuntimeFailure, RuntimeState, RuntimeStatus, exits
from projects import services as project_services
from projects.models import Project
from queue_jobs.models import ACTIVE_STATES, Job
from queue_jobs.pipeline import PipelineBusy

logger = logging.getLogger(__name__)

CRASHED_MESSAGE = "The project's server stopped unexpectedly. Start it again to continue."
# Exit codes of a server stopped on purpose (SIGTERM, SIGKILL, the sandbox's 143):
# stops are not crashes, and a kill from outside is left to the periodic check.
_STOPPED_CODES = {0, 143, -signal.SIGTERM, -signal.SIGKILL, -signal.SIGINT, 130}


def crashed_message(reason: str) -> str:
    """What the user reads: why a bound stopped the server, if one did."""
    if reason:
        return f"The project's server was stopped: {reason}. Start it again to continue."
    return CRASHED_MESSAGE


def projects_reconcile() -> dict[str, int]:
    """Mark running projects whose server died as ``error``; returns counts."""
    crashed = 0
    for project in _running_not_busy():
        state = project_services.runtime_state(project)
        if state is None:
            continue
        runtime = project_services.project_runtime(project)
        if runtime.status(state) == RuntimeStatus.CRASHED:
            crashed += _mark_crashed(project, state=state, reason=runtime.stop_reason(state))
    return {"crashed": crashed}


def project_server_exited(event: exits.ServerExit) -> None:
    """The fast path (a listener of ``doce.opencode.runtimes.exits``, in the thread of
    the process that spawned the server): the project whose server this was is marked
    at once, as ``projects_reconcile`` would mark it half a minute later."""
    if event.returncode in _STOPPED_CODES:
        return
    try:
        candidates = _running_not_busy().filter(
            runtime_state__pid=event.pid, runtime_state__data_dir=event.data_dir
        )
        for project in candidates:
            state = project_services.runtime_state(project)
            if state is None or not state.active:
                continue
            reason = project_services.project_runtime(project).stop_reason(state)
            _mark_crashed(project, state=state, reason=reason)
    finally:
        connections.close_all()  # this thread's own: the thread ends here


def _running_not_busy():
    busy_projects = Job.objects.filter(state__in=ACTIVE_STATES).values("subject_id")
    return Project.objects.filter(status=Project.Status.RUNNING).exclude(pk__in=busy_projects)


def _mark_crashed(project: Project, *, state: RuntimeState, reason: str) -> int:
    """``error`` with the reason, if the project still runs that server; 1 if marked."""
    still = Project.objects.filter(pk=project.pk, status=Project.Status.RUNNING)
    if state.pid is not None:  # not a newer server of the same project
        still = still.filter(runtime_state__pid=state.pid)
    updated = still.update(
        status=Project.Status.ERROR,
        error_kind=Project.ErrorKind.RUNTIME,
        error_message=crashed_message(reason),
        provider_credentials_set=False,
        updated_at=timezone.now(),
    )
    if updated:
        capacity.slot_release(kind=project_services.PROJECT_SERVERS, key=str(project.pk))
        logger.warning(
            "project %s: its OpenCode server died%s", project.pk, f" ({reason})" if reason else ""
        )
    return updated


def projects_stop_failed() -> int:
    """Stop the server of each project in ``error`` whose runtime state still says a
    server runs (a failed start-up step leaves it up, holding 300-850 MB); returns how
    many. The project stays in ``error`` with its message, so the user still sees why it
    failed; Start brings up a new server. Projects with an active job are left to it."""
    stopped = 0
    candidates = (
        Project.objects.filter(status=Project.Status.ERROR, runtime_state__active=True)
        .exclude(pk__in=Job.objects.filter(state__in=ACTIVE_STATES).values("subject_id"))
        .values_list("pk", flat=True)
    )
    for project_id in candidates:
        try:
            stopped += _stop_failed_server(project_id)
        except (RuntimeFailure, OSError):  # tried again next time; the others go on
            logger.exception("project %s: the failed project's server did not stop", project_id)
    if stopped:
        logger.info("stopped the servers of %s failed project(s)", stopped)
    return stopped


def _stop_failed_server(project_id: int) -> int:
    with transaction.atomic():
        # The row lock makes a Start clicked meanwhile wait until the server is down (its
        # steps then read the stopped state and start a new one); a Start that got in
        # first changed the status or queued jobs, and the project is not touched.
        project = (
            Project.objects.select_for_update()
            .filter(pk=project_id, status=Project.Status.ERROR)
            .exclude(pk__in=Job.objects.filter(state__in=ACTIVE_STATES).values("subject_id"))
            .first()
        )
        state = project_services.runtime_state(project) if project else None
        if state is None or not state.active:
            return 0
        state = project_services.project_runtime(project).stop(state)
        Project.objects.filter(pk=project.pk).update(
            runtime_state=state.to_dict(), provider_credentials_set=False
        )
        capacity.slot_release(kind=project_services.PROJECT_SERVERS, key=str(project.pk))
    logger.info("project %s: stopped the server of the failed project", project_id)
    return 1


def projects_stop_idle(*, idle: timedelta | None = None) -> int:
    """Stop running projects nobody used for ``idle`` (a server holds 300-850 MB).
    Projects in ``error`` are not idle but failed: ``projects_stop_failed`` stops their
    servers, keeping their status, so neither stops a server the other did."""
    idle = idle or timedelta(minutes=settings.DOCE_PROJECT_IDLE_MINUTES)
    cutoff = timezone.now() - idle
    stale = Project.objects.filter(status=Project.Status.RUNNING).filter(
        Q(last_activity_at__lt=cutoff) | Q(last_activity_at__isnull=True, updated_at__lt=cutoff)
    )
    stopped = 0
    for project in stale:
        try:
            project_services.project_stop(project=project)
            stopped += 1
        except PipelineBusy:
            continue
    if stopped:
        logger.info("stopped %s idle project(s)", stopped)
    return stopped
