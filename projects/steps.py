"""The project's pipeline steps, registered with the job engine (queue_jobs).

Each is idempotent, so a task redelivered after its worker died (acks_late) does no
harm: a live server is kept, a session the server still has is reused, and the initial
prompt is never sent twice."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from doce import capacity
from doce.encrypted_fields import is_undecryptable
from doce.opencode import ModelRef, NotFound, OpenCodeClient, OpenCodeError
from doce.opencode.client import HEALTH_PROBE_TIMEOUT
from doce.opencode.runtimes import RuntimeFailure, RuntimeState
from doce.opencode.runtimes.config import write_opencode_config
from projects import credentials, instance, pool, tokens
from projects import services as project_services
from projects.capacity import server_slot_take
from projects.jobs import CREDENTIAL_ATTEMPTS, JobType
from projects.models import Project
from projects.tasks import pool_fill, pool_refill_soon
from queue_jobs.engine import StepError, StepWait, work_waiting
from queue_jobs.models import Job
from queue_jobs.registry import step

logger = logging.getLogger(__name__)

# A worker waits this long for a starting server to say it listens before it looks
# whether other work needs it (then it hands the step back to the queue).
HEALTH_WAIT_SLICE = 2.0
# After this long without the "listening" line, each slice also probes health once.
LISTENING_LINE_GRACE = 10.0


def mark_project_failed(job: Job, exc: StepError) -> None:
    """A start-up, stop or delete step failed for good: the project shows why. (Work on
    a running project, such as a re-injection, leaves it running; its job row says.)"""
    kind = exc.kind or Project.ErrorKind.PIPELINE
    Project.objects.filter(pk=job.subject_id).exclude(status=Project.Status.DELETING).update(
        status=Project.Status.ERROR,
        error_kind=kind,
        error_message=exc.user_message[:2000],
        updated_at=timezone.now(),
    )
    # A start that failed after taking a pooled server never reaches the prompt step,
    # which asks for its replacement: ask now (a full pool does nothing).
    if pool.pool_size():
        transaction.on_commit(pool_fill.delay, robust=True)


def _opencode_error(exc: OpenCodeError, doing: str) -> StepError:
    return StepError(f"OpenCode could not {doing}: {exc.message}", retryable=exc.retryable)


# Hands off: the wait for health goes to the back of the queue, so that in a burst every
# project's server is started before any worker waits for one of them. The steps after
# it run straight on in the same task, with no trip through the broker in between.
@step(JobType.RUNTIME_UP, on_failure=mark_project_failed, hand_off=True)
def runtime_up(job: Job) -> None:
    _server_up(job.subject)


def _server_up(project: Project) -> RuntimeState:
    """Take a ready server of the warm pool, or start the project's own unless it still
    runs; record where it runs."""
    runtime = project_services.project_runtime(project)
    if is_undecryptable(project.server_password):
        # Made while a wrong DOCE_ENCRYPTION_KEYS was configured: nothing opens it now,
        # so its server could never be reached. A new password, and a new server.
        project = project_services.server_password_renew(project=project)
    claim = pool.server_claim(project)
    if claim is pool.Claim.CLAIMED:
        return _pooled_up(project)
    server_slot_take(project)  # or StepWait: the start waits its turn
    if claim is pool.Claim.USER_FULL and pool.server_claim(project) is pool.Claim.CLAIMED:
        return _pooled_up(project)  # room was made: the pooled server takes the slot
    slot = {"kind": project_services.PROJECT_SERVERS, "key": str(project.pk)}
    try:
        state = runtime.ensure_started(
            project_services.spec_to_start(project_services.project_spec(project)),
            project_services.runtime_state(project),
        )
    except RuntimeFailure as exc:
        capacity.slot_release(**slot)
        raise StepError(
            f"The project's server did not start: {exc.message}",
            retryable=exc.retryable,
            kind=Project.ErrorKind.RUNTIME,
        ) from exc
    except ValueError as exc:  # a spec that can never start (bad model, bad id)
        capacity.slot_release(**slot)
        raise StepError(f"The project cannot start: {exc}", retryable=False) from exc
    capacity.slot_attach(**slot, state=state, owner_id=project.owner_id)
    Project.objects.filter(pk=project.pk).update(
        runtime=runtime.name,
        runtime_state=state.to_dict(),
        data_dir=state.data_dir,
        status=Project.Status.STARTING,
        updated_at=timezone.now(),
    )
    return state


def _pooled_up(project: Project) -> RuntimeState:
    """The project took over a pooled server (projects.pool): it gets the project's
    opencode.json (the credential step disposes the neutral instance). The pool gets a
    replacement once the prompt is sent (``send_initial_prompt``)."""
    project = Project.objects.get(pk=project.pk)
    try:
        write_opencode_config(project_services.project_spec(project))
    except (RuntimeFailure, ValueError) as exc:
        failure = exc if isinstance(exc, RuntimeFailure) else RuntimeFailure(str(exc))
        raise StepError(
            f"The project's server did not start: {failure.message}",
            retryable=failure.retryable and isinstance(exc, RuntimeFailure),
            kind=Project.ErrorKind.RUNTIME,
        ) from exc
    return project_services.runtime_state(project)


@step(JobType.WAIT_HEALTHY, on_failure=mark_project_failed)
def wait_healthy(job: Job) -> None:
    """Wait for the server without holding a worker that other work needs: a worker
    waits for the server to say it listens (reading its log, no connection) in slices
    of HEALTH_WAIT_SLICE; after a slice, if another job waits for a worker (ten
    projects starting at once), the step hands itself back to the queue (StepWait), so
    that a server that is ready is not stuck behind others that are not; if none does,
    it goes on waiting here, which spares a trip through the broker. Once the server
    listens, its health answers within moments. A runtime that cannot read the line
    (Docker) is waited for by the health probe alone, in one go."""
    project = job.subject
    state = project_services.runtime_state(project)
    if state is None:
        raise StepError("The project's server was never started.", retryable=False)
    runtime = project_services.project_runtime(project)
    if not runtime.is_alive(state):
        # It exited while starting (e.g. another server took its port before it bound
        # it): start it again, on a new port, rather than probe a dead one.
        logger.warning(
            "project %s: its server exited while starting; starting it again", project.pk
        )
        state = _server_up(project)
    password = str(project.server_password)
    since = _health_wait_began(job)
    limit = settings.DOCE_OPENCODE_START_TIMEOUT
    try:
        while True:
            slice_ = max(min(since + limit - time.time(), HEALTH_WAIT_SLICE), 0)
            if runtime.wait_listening(state, timeout=slice_) is not False:
                break
            waited = time.time() - since
            if waited >= limit:
                raise RuntimeFailure(
                    f"OpenCode did not start listening within {limit:.0f} s",
                    log_tail=runtime.log_tail(state),
                )
            # A server that answers without ever printing the line (another OpenCode
            # version) is found by one short probe once it is past due.
            if waited >= LISTENING_LINE_GRACE and _answers(runtime, state, password):
                break
            if work_waiting(besides=job):
                raise StepWait("Waiting for the project's server to start.", retry_in=0)
        runtime.wait_healthy(state, password, timeout=max(since + limit - time.time(), 1.0))
    except RuntimeFailure as exc:
        raise StepError(
            f"The project's server did not come up: {exc.message}",
            retryable=exc.retryable,
            kind=Project.ErrorKind.RUNTIME,
        ) from exc


def _health_wait_began(job: Job) -> float:
    """When this attempt began waiting for health: kept on the job across the slices
    (a StepWait does not count as an attempt), so the start timeout bounds the whole
    wait; a new attempt (after a failure, or a redelivery) waits afresh."""
    mark = (job.params or {}).get("health_wait")
    if isinstance(mark, dict) and mark.get("attempt") == job.attempts:
        return float(mark["since"])
    since = time.time()
    job.params = {**(job.params or {}), "health_wait": {"attempt": job.attempts, "since": since}}
    Job.objects.filter(pk=job.pk).update(params=job.params)
    return since


def _answers(runtime, state: RuntimeState, password: str) -> bool:
    try:
        runtime.wait_healthy(state, password, timeout=HEALTH_PROBE_TIMEOUT)
    except RuntimeFailure:
        return False
    return True


@step(JobType.SET_CREDENTIALS, max_attempts=CREDENTIAL_ATTEMPTS, on_failure=mark_project_failed)
def set_provider_credentials(job: Job) -> None:
    project = job.subject
    # Right after health and before the first session the server has no instance yet,
    # so the credential applies at once. A project that already had a session may have
    # a live instance caching the old one: dispose (5 ms) so the next request rebuilds.
    # A pooled server (rebuild_pending) has the neutral config's instance: dispose it too.
    credentials.inject(
        project=project, dispose=bool(project.bootstrap_session_id) or project.rebuild_pending
    )


@step(JobType.REINJECT_CREDENTIALS, max_attempts=CREDENTIAL_ATTEMPTS)
def reinject_credentials(job: Job) -> None:
    project = job.subject
    if not project_services.is_running(project):
        return  # a stopped project gets the current credential at its next start
    provider_id = job.params.get("provider_id") or project.current_model_provider_id
    # The project's opencode.json names its model and the user's custom providers, which
    # may have changed too (a model change, a new endpoint): it is written again, and the
    # rebuild that follows (never under a busy session) makes OpenCode read it.
    credentials.reinject(project=project, provider_id=provider_id)


@step(JobType.REBUILD_WHEN_IDLE, max_attempts=CREDENTIAL_ATTEMPTS)
def rebuild_when_idle(job: Job) -> None:
    project = job.subject
    if not project_services.is_running(project):
        return  # a server started later reads the current credential and config
    credentials.rebuild_when_idle(project=project)


@step(JobType.REMOVE_CREDENTIALS)
def remove_credentials(job: Job) -> None:
    project = job.subject
    if not project_services.is_running(project):
        return
    credentials.remove(project=project, provider_id=job.params["provider_id"])


@step(JobType.SESSION_CREATE, on_failure=mark_project_failed)
def session_create(job: Job) -> None:
    project = job.subject
    title = project_services.session_title(project)
    with project_services.project_client(project) as client:
        try:
            if project.bootstrap_session_id:
                try:
                    client.session_get(project.bootstrap_session_id)
                    return
                except NotFound:
                    pass
            # A worker may have died after creating the session but before saving its
            # id: the title says which session is ours. Only a later attempt can find
            # one (each claim of the job counts one), so the first skips the look.
            existing = (
                [s for s in client.session_list() if s.get("title") == title]
                if job.attempts > 1
                else []
            )
            session = existing[0] if existing else client.session_create(title=title)
        except OpenCodeError as exc:
            raise _opencode_error(exc, "open a session") from exc
    Project.objects.filter(pk=project.pk).update(
        bootstrap_session_id=session["id"], updated_at=timezone.now()
    )


@step(JobType.SEND_INITIAL_PROMPT, on_failure=mark_project_failed)
def send_initial_prompt(job: Job) -> None:
    project = job.subject
    if not project.initial_prompt_sent:
        try:
            with (
                instance.server_lock(project.pk),
                project_services.project_client(project) as client,
            ):
                _initial_prompt_send(client, project, first_attempt=job.attempts <= 1)
        except instance.ServerBusy as exc:
            raise StepError(str(exc), retryable=True) from exc
    now = timezone.now()
    Project.objects.filter(pk=project.pk).update(
        initial_prompt_sent=True,
        status=Project.Status.RUNNING,
        error_kind="",
        error_message="",
        last_activity_at=now,
        updated_at=now,
    )
    # A server taken from the pool is replaced now that the prompt is on its way, a
    # little later still, so that starting it does not slow the prompt's way to the LLM
    # (or the other projects of a burst) down.
    if pool.pool_size():
        transaction.on_commit(pool_refill_soon, robust=True)


def _initial_prompt_send(client: OpenCodeClient, project: Project, *, first_attempt: bool) -> None:
    """With the server lock held, as for a message (projects.services.message_send).
    Only a later attempt (its worker died, or OpenCode's answer was lost) may find the
    prompt already sent, so only a later attempt looks."""
    tokens.oauth_lease(project=project)  # an OAuth token due for refresh: see tokens
    try:
        sent_before = not first_attempt and any(
            message["info"].get("role") == "user"
            for message in client.messages(project.bootstrap_session_id)
        )
        if not sent_before:
            client.prompt_async(
                project.bootstrap_session_id,
                project.prompt,
                model=ModelRef(project.current_model_provider_id, project.current_model_id),
            )
    except OpenCodeError as exc:
        raise _opencode_error(exc, "take your prompt") from exc


@step(JobType.RUNTIME_DOWN, on_failure=mark_project_failed)
def runtime_down(job: Job) -> None:
    project_services.server_stop(project=job.subject)


@step(JobType.PROJECT_DELETE, on_failure=mark_project_failed)
def project_delete(job: Job) -> None:
    project_services.project_destroy(project=job.subject)
