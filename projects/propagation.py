"""Keep running projects in step with the connections they use: a changed key is
re-injected, a disconnected, revoked or no longer granted one removed. Stopped projects
need nothing: they get the current credential at their next start."""

from __future__ import annotations

import logging

from django.db import transaction

from projects.instance import rebuild_mark
from projects.jobs import JobType
from projects.models import Project
from providers.selectors import usable_provider_ids
from queue_jobs.pipeline import PipelineBusy, pipeline_enqueue

logger = logging.getLogger(__name__)

LIVE = (Project.Status.RUNNING, Project.Status.STARTING)


def credentials_propagate(*, user_id: int | None, provider_id: str, removed: bool) -> int:
    """Enqueue a re-injection (or removal) job for each live project; returns how many.

    ``user_id`` None: a team key (or who may use it) changed, for every owner whose
    projects run on ``provider_id``. Whatever changed, a project whose owner can still
    use the provider (their own key, or a team key granted to them:
    ``providers.selectors.connections_in_use``) gets that credential again; the others
    lose it, so no prompt goes out on a key its owner may no longer use."""
    projects = Project.objects.filter(status__in=LIVE)
    if user_id is not None:
        projects = projects.filter(owner_id=user_id)
    if user_id is None or not removed:
        # Only projects that use the provider hold (or need) its key.
        projects = projects.filter(current_model_provider_id=provider_id)
    usable: dict[int, bool] = {}
    count = 0
    for project in projects.only("pk", "owner_id", "current_model_provider_id"):
        if project.owner_id not in usable:
            usable[project.owner_id] = provider_id in usable_provider_ids(user=project.owner_id)
        gone = not usable[project.owner_id]
        if project.current_model_provider_id != provider_id:
            gone = removed  # a provider the project does not run on: take it out
        job_type = JobType.REMOVE_CREDENTIALS if gone else JobType.REINJECT_CREDENTIALS
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
