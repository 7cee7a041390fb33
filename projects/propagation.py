"""Keep running projects in step with the user's connections: a changed key is
re-injected, a disconnected or revoked one removed. Stopped projects need nothing: they
get the current credential at their next start."""

from __future__ import annotations

import logging

from django.db import transaction

from projects.instance import rebuild_mark
from projects.jobs import JobType
from projects.models import Project
from queue_jobs.pipeline import PipelineBusy, pipeline_enqueue

logger = logging.getLogger(__name__)

LIVE = (Project.Status.RUNNING, Project.Status.STARTING)


def credentials_propagate(*, user_id: int, provider_id: str, removed: bool) -> int:
    """Enqueue a re-injection (or removal) job for each live project; returns how many."""
    projects = Project.objects.filter(owner_id=user_id, status__in=LIVE)
    if not removed:
        # Only projects that use the provider need its new key.
        projects = projects.filter(current_model_provider_id=provider_id)
    job_type = JobType.REMOVE_CREDENTIALS if removed else JobType.REINJECT_CREDENTIALS
    count = 0
    for project in projects.only("pk", "owner_id"):
        # From now on the server's instance is out of date: a prompt sent before the job
        # below has run applies the change itself first (projects.instance).
        rebuild_mark(project.pk)
        try:
            with transaction.atomic():
                pipeline_enqueue(
                    subject=project, job_types=[job_type], params={"provider_id": provider_id}
                )
            count += 1
        except PipelineBusy:
            # One already queued will read the connection as it is when it runs; one
            # already running may have read it: the mark above has the next prompt
            # apply the change again.
            logger.info("project %s: %s already queued", project.pk, job_type)
    return count
