"""Periodic housekeeping: notice servers that died, stop projects left idle."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from doce.opencode.runtimes import RuntimeStatus
from projects import services as project_services
from projects.models import Project
from queue_jobs.models import ACTIVE_STATES, Job
from queue_jobs.pipeline import PipelineBusy

logger = logging.getLogger(__name__)

CRASHED_MESSAGE = "The project's server stopped unexpectedly. Start it again to continue."


def projects_reconcile() -> dict[str, int]:
    """Mark running projects whose server died as ``error``; returns counts."""
    crashed = 0
    busy_projects = Job.objects.filter(state__in=ACTIVE_STATES).values("subject_id")
    candidates = Project.objects.filter(status=Project.Status.RUNNING).exclude(pk__in=busy_projects)
    for project in candidates:
        state = project_services.runtime_state(project)
        if state is None:
            continue
        if project_services.project_runtime(project).status(state) == RuntimeStatus.CRASHED:
            updated = Project.objects.filter(pk=project.pk, status=Project.Status.RUNNING).update(
                status=Project.Status.ERROR,
                error_kind=Project.ErrorKind.RUNTIME,
                error_message=CRASHED_MESSAGE,
                provider_credentials_set=False,
                updated_at=timezone.now(),
            )
            crashed += updated
            if updated:
                logger.warning("project %s: its OpenCode server died", project.pk)
    return {"crashed": crashed}


def projects_stop_idle(*, idle: timedelta | None = None) -> int:
    """Stop running projects nobody used for ``idle`` (a server holds 300-850 MB)."""
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
