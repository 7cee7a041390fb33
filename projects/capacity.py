"""Room for a project's server: the policy on top of the server-slot ledger
(doce.capacity).

Before a project's server starts, it takes a slot:
- over the global bound, a server of the warm pool (projects.pool) is stopped first:
  the pool never makes a project wait;
- over its owner's own bound (DOCE_MAX_SERVERS_PER_USER), the owner's least recently
  used idle project (running, no work queued, its agent not answering) is stopped to make
  room, and both project pages say which and why;
- over the global bound, or when none of the owner's projects is idle, the start waits
  its turn without holding a worker: the step is run again shortly
  (queue_jobs.engine.StepWait) and the page says how many are ahead.
"""

from __future__ import annotations

import logging

from django.db.models.functions import Coalesce
from django.utils import timezone

from doce import capacity
from doce.opencode import OpenCodeError
from doce.opencode.runtimes import RuntimeFailure
from projects import services as project_services
from projects.models import Project
from queue_jobs.engine import StepWait
from queue_jobs.models import ACTIVE_STATES, Job

logger = logging.getLogger(__name__)

# The first in line asks every second, the others less often.
POLL_SECONDS = 1.0
POLL_CAP_SECONDS = 5.0
WAITING = "Waiting for a free server slot"
BUSY_CHECK_TIMEOUT = 2.0


def poll_delay(ahead: int) -> float:
    return min(POLL_SECONDS + 0.5 * ahead, POLL_CAP_SECONDS)


def waiting_message(ahead: int) -> str:
    where = "yours is next" if ahead == 0 else f"{ahead} ahead"
    return (
        f"{WAITING}: {where}. doce runs at most {capacity.server_limit()} OpenCode servers at "
        "once; this project starts as soon as one stops."
    )


def user_waiting_message() -> str:
    limit = capacity.user_limit()
    return (
        f"{WAITING}: you already run {limit} project{'s' if limit != 1 else ''} at once (the "
        "most allowed) and none of them is idle. This one starts when one of them stops."
    )


def server_slot_take(project: Project) -> None:
    """Take a slot for the project's server, stopping a server of the warm pool or the
    owner's least recently used idle project if that makes room; StepWait when the start
    has to wait."""
    stopped: list[Project] = []
    stops = 0
    while True:
        decision = capacity.slot_acquire(
            kind=project_services.PROJECT_SERVERS, key=str(project.pk), owner_id=project.owner_id
        )
        if decision.granted:
            _granted(project, stopped)
            return
        if not decision.user_full:
            if capacity.servers_yield():  # the warm pool never makes a project wait
                continue
            _note(project, waiting_message(decision.ahead))
            raise StepWait(waiting_message(decision.ahead), retry_in=poll_delay(decision.ahead))
        if stops > capacity.user_limit():  # a bound lowered meanwhile: a few stops
            break
        stops += 1
        victim = idle_project(project, keys=decision.user_held)
        if victim is None or not _stop_for(victim, project):
            break
        stopped.append(victim)
    _note(project, user_waiting_message())
    raise StepWait(user_waiting_message(), retry_in=POLL_CAP_SECONDS)


def idle_project(project: Project, *, keys: tuple[str, ...]) -> Project | None:
    """The owner's least recently used project among ``keys`` that is running, has no
    work queued and whose agent is not answering a prompt."""
    busy_jobs = Job.objects.filter(state__in=ACTIVE_STATES).values("subject_id")
    candidates = (
        Project.objects.filter(
            owner_id=project.owner_id,
            pk__in=[int(key) for key in keys if key.isdigit()],
            status=Project.Status.RUNNING,
        )
        .exclude(pk=project.pk)
        .exclude(pk__in=busy_jobs)
        .order_by(Coalesce("last_activity_at", "updated_at"), "pk")
    )
    for candidate in candidates:
        if not _agent_busy(candidate):
            return candidate
    return None


def _agent_busy(project: Project) -> bool:
    """Whether the project's agent is working on a prompt (OpenCode's session status).
    A server that does not answer is not working for anyone: it may be stopped."""
    try:
        with project_services.project_client(project, timeout=BUSY_CHECK_TIMEOUT) as client:
            statuses = client.session_status()
    except (project_services.ProjectNotRunning, OpenCodeError, RuntimeFailure):
        return False
    return any((status or {}).get("type", "idle") != "idle" for status in statuses.values())


def _stop_for(victim: Project, project: Project) -> bool:
    """Stop ``victim``'s server to make room for ``project``; False if it was taken
    meanwhile (a Start, a message, a job) or would not stop."""
    claimed = (
        Project.objects.filter(pk=victim.pk, status=Project.Status.RUNNING)
        .exclude(pk__in=Job.objects.filter(state__in=ACTIVE_STATES).values("subject_id"))
        .update(status=Project.Status.STOPPING, updated_at=timezone.now())
    )
    if not claimed:
        return False
    try:
        project_services.server_stop(project=victim)  # frees its slot
    except RuntimeFailure as exc:
        logger.warning("project %s: could not stop it to make room: %s", victim.pk, exc.message)
        Project.objects.filter(pk=victim.pk, status=Project.Status.STOPPING).update(
            status=Project.Status.RUNNING
        )
        return False
    limit = capacity.user_limit()
    _note(
        victim,
        f"Stopped to make room for your project “{project.name}”: you may run {limit} "
        f"project{'s' if limit != 1 else ''} at once, and this one was the least recently "
        "used. Start it again to continue.",
    )
    logger.info("project %s: stopped to make room for project %s", victim.pk, project.pk)
    return True


def _granted(project: Project, stopped: list[Project]) -> None:
    if stopped:
        names = ", ".join(f"“{victim.name}”" for victim in stopped)
        _note(
            project,
            f"Your idle project {names} was stopped to make room for this one (you may run "
            f"{capacity.user_limit()} at once).",
        )
    elif project.server_note.startswith(WAITING):
        _note(project, "")


def _note(project: Project, note: str) -> None:
    project.server_note = note[:500]
    Project.objects.filter(pk=project.pk).update(server_note=project.server_note)
