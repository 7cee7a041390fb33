"""Project lifecycle: create, start, stop, delete, change model, talk to the agent.

Views call these; the pipeline steps (projects.steps) call the server-side halves.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from doce import capacity
from doce.endpoints import endpoint_problem
from doce.inputs import DOUBLE_SUBMIT_WINDOW
from doce.opencode import ModelRef, OpenCodeClient, OpenCodeError
from doce.opencode.runtimes import (
    CustomProvider,
    Runtime,
    RuntimeFailure,
    RuntimeState,
    RuntimeStatus,
    ServerSpec,
    get_runtime,
)
from doce.opencode.runtimes.config import write_opencode_config
from projects import budgets, instance, tokens
from projects.conversation import conversation_store
from projects.jobs import START_PIPELINE, JobType
from projects.models import PooledServer, Project
from projects.selectors import model_providers
from providers.access import access_for, opencode_limits_for
from providers.organisations.selectors import organisation_urls_for
from providers.selectors import custom_endpoints
from providers.services import provider_config_for
from queue_jobs.models import Job
from queue_jobs.pipeline import jobs_cancel, pipeline_enqueue

logger = logging.getLogger(__name__)

NAME_LENGTH = 60
# A project's server takes a slot of the ledger (doce.capacity): it counts toward its
# owner's bound too, and a start beyond the global bound waits its turn.
PROJECT_SERVERS = capacity.kind_register("project", per_user=True, waits=True)


class ProjectNotRunning(Exception):
    """The project's server is not up: start the project first."""


# --- server plumbing (used by the pipeline steps) ------------------------------------


def project_data_dir(project_id: int) -> Path:
    """The default data folder of a project, under DOCE_PROJECTS_DIR."""
    return Path(settings.DOCE_PROJECTS_DIR) / str(project_id)


def project_runtime(project: Project) -> Runtime:
    return get_runtime(project.runtime or None)


def runtime_state(project: Project) -> RuntimeState | None:
    return RuntimeState.from_dict(project.runtime_state) if project.runtime_state else None


# Statuses whose recorded server may still run (or just died, unnoticed yet).
_MAY_RUN = (Project.Status.STARTING, Project.Status.RUNNING, Project.Status.STOPPING)


def reserved_ports() -> frozenset[int]:
    """The ports (OpenCode's and the preview's) recorded for project and pooled servers
    that may still run: a new server never takes one (``ServerSpec.reserved_ports``, set
    where a server is started: ``spec_to_start``), so a preview link to a server that
    died reaches no other project's dev server."""
    states = [
        *Project.objects.filter(status__in=_MAY_RUN).values_list("runtime_state", flat=True),
        *PooledServer.objects.values_list("runtime_state", flat=True),
    ]
    ports = set()
    for state in states:
        if isinstance(state, dict):
            ports.update(
                value
                for value in (state.get("port"), state.get("preview_port"))
                if isinstance(value, int)
            )
    return frozenset(ports)


def spec_to_start(spec: ServerSpec) -> ServerSpec:
    """``spec`` as a server is started with it: the ports other servers hold reserved.
    (Read at the start only: a spec that only rewrites opencode.json needs none.)"""
    return replace(spec, reserved_ports=reserved_ports())


def project_spec(project: Project) -> ServerSpec:
    """What the project's server is started with. A custom endpoint that
    ``doce.endpoints`` refuses for the owner (a row from before the rule, or written
    around the form) is left out; a project whose model needs it cannot start
    (RuntimeFailure, not retryable, saying what to change)."""
    trusted = get_user_model().objects.filter(pk=project.owner_id, is_staff=True).exists()
    providers = []
    for connection in custom_endpoints(user=project.owner_id):
        # A team key's URL was typed by staff (``endpoint_trusted``).
        problem = endpoint_problem(connection.base_url, trusted=trusted or connection.is_shared)
        if problem and connection.provider_id == project.current_model_provider_id:
            raise RuntimeFailure(
                f"the endpoint “{connection.name or connection.provider_id}” cannot be used: "
                f"{problem} Change its base URL in Settings.",
                retryable=False,
            )
        if not problem:
            providers.append(
                CustomProvider(
                    id=connection.provider_id,
                    name=connection.name or connection.provider_id,
                    base_url=connection.base_url,
                    models=list(connection.models or []),
                    cost=_cost(connection.prices),
                )
            )
    return ServerSpec(
        name=str(project.pk),
        data_dir=Path(project.data_dir) if project.data_dir else project_data_dir(project.pk),
        model=project.model,
        password=str(project.server_password),
        custom_providers=providers,
        trusted_endpoints=trusted,
        # An organisation serving the project's provider: its URL and the providers its
        # document declares (providers.organisations; registered by staff).
        trusted_urls=organisation_urls_for(
            user=project.owner_id, provider_id=project.current_model_provider_id
        ),
        # What the owner may use (docs/providers.md, "Model access").
        model_limits=opencode_limits_for(user=project.owner_id, model=project.model),
        # The project's provider's options (docs/providers.md); its key goes through
        # PUT /auth (projects.credentials).
        provider_configs=[
            config
            for config in [
                provider_config_for(
                    user=project.owner_id, provider_id=project.current_model_provider_id
                )
            ]
            if config is not None
        ],
    )


def _cost(prices: dict | None) -> dict[str, float] | None:
    """A custom endpoint's stored price as OpenCode's model ``cost`` (None: no price)."""
    try:
        cost = {kind: float(prices[kind]) for kind in ("input", "output")} if prices else None
    except (KeyError, TypeError, ValueError):
        return None
    return cost if cost and any(cost.values()) else None


@contextmanager
def project_client(project: Project, **options):
    state = runtime_state(project)
    if state is None or not state.active:
        raise ProjectNotRunning(f"project {project.pk} has no running server")
    client: OpenCodeClient = project_runtime(project).client(
        state, str(project.server_password), **options
    )
    try:
        yield client
    finally:
        client.close()


def is_running(project: Project) -> bool:
    state = runtime_state(project)
    return state is not None and project_runtime(project).status(state) == RuntimeStatus.RUNNING


def session_title(project: Project) -> str:
    return f"doce project {project.pk}"


def conversation_sync(*, project: Project) -> tuple[str, list[dict]]:
    """Read the running server's messages into doce's copy (projects.conversation).
    Returns why it could not ("" when it did) and the messages read."""
    if project.status != Project.Status.RUNNING or not project.bootstrap_session_id:
        return "", []
    try:
        with project_client(project, timeout=5) as client:
            messages = client.messages(project.bootstrap_session_id)
    except (OpenCodeError, ProjectNotRunning) as exc:
        return getattr(exc, "message", str(exc)), []
    conversation_store(project=project, messages=messages)
    return "", messages


def server_stop(*, project: Project) -> None:
    # The last word of the server is kept before it goes (the recorder may lag).
    conversation_sync(project=project)
    state = runtime_state(project)
    if state is not None:
        state = project_runtime(project).stop(state)
    capacity.slot_release(kind=PROJECT_SERVERS, key=str(project.pk))
    Project.objects.filter(pk=project.pk).update(
        status=Project.Status.STOPPED,
        runtime_state=state.to_dict() if state else {},
        provider_credentials_set=False,
        updated_at=timezone.now(),
    )


def server_password_renew(*, project: Project) -> Project:
    """Stop the project's server (by process, no password needed) and give the project
    a new server password, encrypted with the current key."""
    state = runtime_state(project)
    if state is not None and state.active:
        state = project_runtime(project).stop(state)
    Project.objects.filter(pk=project.pk).update(
        server_password=secrets.token_urlsafe(32),
        runtime_state=state.to_dict() if state else {},
        provider_credentials_set=False,
        updated_at=timezone.now(),
    )
    logger.warning("project %s: its server password could not be decrypted; renewed", project.pk)
    return Project.objects.get(pk=project.pk)


def servers_stop_all() -> tuple[int, list[tuple[int, str]]]:
    """Stop the server of every project whose state says one runs (shutting doce down:
    `make run`'s Ctrl-C). Returns how many were stopped and the ones that failed."""
    stopped, failed = 0, []
    live = Project.objects.exclude(runtime_state={}).exclude(status=Project.Status.DELETING)
    for project in live:
        state = runtime_state(project)
        if state is None or not state.active:
            continue
        try:
            server_stop(project=project)
        except RuntimeFailure as exc:
            failed.append((project.pk, exc.message))
            continue
        jobs_cancel(subject=project, reason="doce was stopped")
        stopped += 1
    return stopped, failed


def project_destroy(*, project: Project) -> None:
    """Stop the server and delete its folders (with its auth.json) and its lock file, then
    the row."""
    state = runtime_state(project)
    if state is not None:
        project_runtime(project).remove(state)
    capacity.slot_release(kind=PROJECT_SERVERS, key=str(project.pk))
    data_dir = Path(project.data_dir) if project.data_dir else project_data_dir(project.pk)
    if data_dir.exists():
        shutil.rmtree(data_dir, ignore_errors=True)
    instance.server_lock_remove(project.pk)  # no server left to guard
    Project.objects.filter(pk=project.pk).delete()


# --- user actions (called by views) ---------------------------------------------------


def name_from_prompt(prompt: str) -> str:
    words = " ".join(prompt.split())
    if len(words) <= NAME_LENGTH:
        return words
    return words[:NAME_LENGTH].rsplit(" ", 1)[0] + "…"


def project_create(*, owner, prompt: str, model: str, name: str = "") -> Project:
    """Create the project and start its pipeline once the row is committed.

    A double submit (same prompt and model within a few seconds) returns the project the
    first submit created instead of starting a second one. Once the owner's monthly
    budget is used up, refused (budgets.BudgetExceeded) before anything is created.
    """
    budgets.budget_check(user=owner)
    ref = ModelRef.parse(model)
    with transaction.atomic():
        # One creation at a time per user, so the double-submit check below is reliable.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).first()
        duplicate = Project.objects.filter(
            owner=owner,
            prompt=prompt,
            current_model_provider_id=ref.provider_id,
            current_model_id=ref.model_id,
            created_at__gte=timezone.now() - DOUBLE_SUBMIT_WINDOW,
        ).first()
        if duplicate is not None:
            return duplicate
        project = Project.objects.create(
            owner=owner,
            name=name or name_from_prompt(prompt),
            prompt=prompt,
            current_model_provider_id=ref.provider_id,
            current_model_id=ref.model_id,
            server_password=secrets.token_urlsafe(32),
            status=Project.Status.STARTING,
        )
        project.data_dir = str(project_data_dir(project.pk))
        project.save(update_fields=["data_dir"])
        leftover_set_aside(Path(project.data_dir))
        pipeline_start(project=project)
    return project


def leftover_set_aside(data_dir: Path) -> Path | None:
    """A new project starts in a new folder. One already at its place belongs to no
    project: its id was used before (SQLite hands an id out again once its table was
    rebuilt, by a migration undone, or its creation rolled back; so does a restored
    database), and it may hold another user's files and credentials. It is moved aside
    in the same folder (a rename, so nothing is lost and no permission on the folder
    itself is needed) and named in the log. Returns where it went."""
    if not data_dir.exists() and not data_dir.is_symlink():
        return None
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    aside = data_dir.with_name(f".leftover-{data_dir.name}-{stamp}-{secrets.token_hex(4)}")
    data_dir.rename(aside)
    logger.warning(
        "a new project's folder %s was already there (left by an earlier project): "
        "moved to %s; delete it once nothing in it is needed",
        data_dir,
        aside,
    )
    return aside


def pipeline_start(*, project: Project) -> list[Job]:
    return pipeline_enqueue(subject=project, job_types=START_PIPELINE)


def project_start(*, project: Project) -> None:
    with transaction.atomic():
        pipeline_start(project=project)
        Project.objects.filter(pk=project.pk).update(
            status=Project.Status.STARTING,
            error_kind="",
            error_message="",
            server_note="",
            updated_at=timezone.now(),
        )


def _replace_work(*, project: Project, job_type: str, status: str, reason: str) -> None:
    """Cancel what is queued for the project and run ``job_type`` instead."""
    with transaction.atomic():
        jobs_cancel(subject=project, reason=reason)
        capacity.slot_withdraw(kind=PROJECT_SERVERS, key=str(project.pk))  # a queued start
        pipeline_enqueue(subject=project, job_types=[job_type])
        Project.objects.filter(pk=project.pk).update(
            status=status, server_note="", updated_at=timezone.now()
        )


def project_stop(*, project: Project) -> None:
    _replace_work(
        project=project,
        job_type=JobType.RUNTIME_DOWN,
        status=Project.Status.STOPPING,
        reason="the project was stopped",
    )


def project_delete(*, project: Project) -> None:
    _replace_work(
        project=project,
        job_type=JobType.PROJECT_DELETE,
        status=Project.Status.DELETING,
        reason="the project was deleted",
    )


def project_change_model(*, project: Project, model: str) -> None:
    """Switch the project's model. A running server gets the new provider's credential
    and config from a re-injection job; until that job has run, the mark has the next
    prompt apply them first (as after a key edit, ``projects.propagation``)."""
    ref = ModelRef.parse(model)
    with transaction.atomic():
        Project.objects.filter(pk=project.pk).update(
            current_model_provider_id=ref.provider_id,
            current_model_id=ref.model_id,
            updated_at=timezone.now(),
        )
        if project.status == Project.Status.RUNNING:
            instance.rebuild_mark(project.pk)
            pipeline_enqueue(
                subject=project,
                job_types=[JobType.REINJECT_CREDENTIALS],
                params={"provider_id": ref.provider_id},
            )


def provider_gone(project: Project) -> str:
    """Why the owner may no longer prompt the project's model ("" when they may): its
    key was disconnected, or the team key was removed or is no longer granted to them
    (``providers.selectors.connections_in_use``), or a model-access rule now refuses the
    model. No prompt goes out then: the old key
    may still sit in the server until its removal job has run."""
    provider_id = project.current_model_provider_id
    if provider_id in model_providers(user=project.owner_id):
        # A model-access rule saved since the model was picked (providers.access): the
        # server no longer offers the model, so the prompt would only fail.
        refused = access_for(user=project.owner_id).problem(provider_id, project.current_model_id)
        return refused or ""
    return (
        f"You can no longer use {provider_id}: its key was disconnected or revoked, or "
        "the team key is no longer shared with you. Connect your own key in Settings › "
        "Providers, or pick another model."
    )


def message_send(*, project: Project, text: str) -> None:
    """Queue a follow-up prompt on the project's session (OpenCode answers 204 at once).
    Once the owner's monthly budget is used up, refused (budgets.BudgetExceeded) before
    anything reaches OpenCode; a reply already running goes on."""
    budgets.budget_check(user=project.owner_id)
    if project.status != Project.Status.RUNNING or not project.bootstrap_session_id:
        raise ProjectNotRunning("The project is not running: start it first.")
    credential_problem = provider_gone(project)
    if credential_problem:
        raise ProjectNotRunning(credential_problem)
    # Under the server lock: a credential change waiting for a rebuild is applied first
    # (so this prompt uses it), an OAuth token due for refresh is this project's to
    # refresh (projects.tokens), and no dispose can land while the prompt starts.
    try:
        with instance.server_lock(project.pk), project_client(project) as client:
            try:
                instance.rebuild_if_pending(
                    client,
                    project=project,
                    prepare=lambda: write_opencode_config(project_spec(project)),
                )
                tokens.oauth_lease(project=project)
                model = ModelRef(project.current_model_provider_id, project.current_model_id)
                instance.prompt_send(client, project.bootstrap_session_id, text, model=model)
            except OpenCodeError as exc:
                raise ProjectNotRunning(
                    f"OpenCode did not take the message: {exc.message}"
                ) from exc
            except (RuntimeFailure, ValueError) as exc:  # from writing opencode.json
                raise ProjectNotRunning(f"The project's configuration failed: {exc}") from exc
    except instance.ServerBusy as exc:
        raise ProjectNotRunning(str(exc)) from exc
    Project.objects.filter(pk=project.pk).update(last_activity_at=timezone.now())
