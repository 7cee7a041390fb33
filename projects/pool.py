"""The warm pool: OpenCode servers started ahead of demand, so that a new project's prompt
reaches the LLM about as soon as a running server can take it (no spawn, no start-up).

A pooled server is whatever the runtime starts for any server (by default sandboxed:
bubblewrap + pasta; a container with the docker runtime), in a folder of its own under
DOCE_PROJECTS_DIR, with a neutral opencode.json (no provider of anyone's) and no
credential. Once it answers, it is warmed: a throw-away session sends a prompt to a
model at a closed port, which loads everything a first prompt needs; the session is then
deleted and the server marked ready.

- **Claim.** A new project's ``runtime.up`` step takes a ready server atomically (a row
  lock, ``skip_locked``: two projects never get the same one) and takes it over: its
  folder, port, process and password become the project's, the row goes, and its slot
  in the ledger moves to the project (within the owner's own bound). The step writes the
  project's opencode.json; the chain then puts the credential (``PUT /auth``), disposes
  the neutral instance (``rebuild_pending``), opens the session and sends the prompt. A
  server serves one project: a stopped project starts a new server, never a pooled one,
  and never gives its own back. With no ready server the cold start runs as before.
- **Counted.** Each pooled server holds a slot (kind ``pool``: not per user, refused when
  full, and it never fills the last free slot). Any start that finds the global bound
  full (a project's, a sign-in's, a catalog read's) stops a pooled server first
  (``servers_yield``, registered with the ledger): the pool never makes anyone wait.
- **Kept full** by Celery (``projects.tasks``): at worker start, after each claim and
  with the reconciler; servers that died or never came up are removed.

Only a project that the neutral server can serve claims one: a new project (no server
before, no folder) whose custom endpoints the sandbox already lets the server reach
(``Runtime.can_serve``: an endpoint on the host's loopback is opened per server when it
starts, so it must be in DOCE_SANDBOX_ALLOW for pooled servers to serve it).
"""

from __future__ import annotations

import enum
import logging
import secrets
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psutil
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from doce import capacity
from doce.locks import file_lock
from doce.opencode import ModelRef, OpenCodeClient, OpenCodeError
from doce.opencode.runtimes import (
    CustomProvider,
    Runtime,
    RuntimeFailure,
    RuntimeState,
    ServerSpec,
    get_runtime,
)
from doce.opencode.runtimes.base import MARKER
from doce.opencode.runtimes.config import write_opencode_config
from projects import services as project_services
from projects.models import PooledServer, Project
from providers.catalog.fetch import PLACEHOLDER_MODEL

logger = logging.getLogger(__name__)

# A pooled server takes a slot of the ledger like any server; refused when full.
POOL_SERVERS = capacity.kind_register("pool")
# The default size: a small share of the servers the machine holds, and never many.
DEFAULT_MAX = 2
DEFAULT_SHARE = 4
# The claimed server's replacement starts this long after the project's prompt was
# sent, so that its start-up does not compete for the CPU with the prompt's way to the
# LLM; while the CPUs stay busy (a burst of projects whose prompts are still on their
# way), later still, asking every REFILL_RETRY_SECONDS, up to REFILL_DEFER_MAX_SECONDS
# after the prompt. At most STARTS_AT_ONCE start together (a start takes a core for a
# second or more), the next ones once those are ready.
REFILL_DELAY_SECONDS = 2.0
REFILL_RETRY_SECONDS = 1.0
REFILL_DEFER_MAX_SECONDS = 30.0
BUSY_CPU_PERCENT = 80.0
BUSY_SAMPLE_SECONDS = 0.25
STARTS_AT_ONCE = 2
# A starting server is asked this often whether it answers (no worker waits meanwhile).
WARM_RETRY_SECONDS = 0.25
HEALTH_PROBE_SECONDS = 0.25
# The warm-up prompt's model: an OpenAI-compatible endpoint at the discard port, where
# nothing listens (inside the sandbox, its own loopback): the call fails at once. It is
# written into opencode.json only, never into the spec the sandbox is built from.
WARMUP_PROVIDER = CustomProvider(
    id="doce-warmup", name="Warm-up", base_url="http://127.0.0.1:9/v1", models=["none"]
)
WARMUP_MODEL = "doce-warmup/none"
FILL_LOCK_SECONDS = 30.0


class Claim(enum.Enum):
    CLAIMED = "claimed"
    NONE = "none"  # no ready server, or the project cannot use one
    USER_FULL = "user_full"  # one is ready, but the owner's bound is full


def pool_size() -> int:
    """DOCE_POOL_SIZE, or by default a quarter of the server bound, at most 2."""
    if settings.DOCE_POOL_SIZE is not None:
        return settings.DOCE_POOL_SIZE
    return min(DEFAULT_MAX, capacity.server_limit() // DEFAULT_SHARE)


def machine_busy() -> bool:
    """The machine's CPUs, all together, were mostly busy over a short sample."""
    return psutil.cpu_percent(interval=BUSY_SAMPLE_SECONDS) >= BUSY_CPU_PERCENT


def _folder(key: str) -> Path:
    return Path(settings.DOCE_PROJECTS_DIR) / f"pool-{key}"


def _spec(*, key: str, data_dir: Path, password: str) -> ServerSpec:
    """The neutral spec: no provider of anyone's, a model it never prompts."""
    return ServerSpec(
        name=f"pool-{key}", data_dir=data_dir, model=PLACEHOLDER_MODEL, password=password
    )


# --- claiming ---------------------------------------------------------------------------
def server_claim(project: Project) -> Claim:
    """Give the new ``project`` a ready pooled server, atomically: the server's folder,
    port, process and password become the project's, the row goes, the slot moves to
    the project. ``Claim.USER_FULL``: the owner's bound is full (make room, then ask
    again); nothing was taken."""
    if pool_size() == 0:
        return Claim.NONE
    runtime = get_runtime()
    if not _fits(project, runtime):
        return Claim.NONE
    with transaction.atomic():
        row = (
            PooledServer.objects.select_for_update(skip_locked=True)
            .filter(state=PooledServer.State.READY, runtime=runtime.name)
            .order_by("ready_at", "pk")
            .first()
        )
        if row is None or not PooledServer.objects.filter(pk=row.pk).delete()[0]:
            return Claim.NONE
        decision = capacity.slot_move(
            kind=POOL_SERVERS,
            key=row.key,
            to_kind=project_services.PROJECT_SERVERS,
            to_key=str(project.pk),
            owner_id=project.owner_id,
        )
        if not decision.granted:
            transaction.set_rollback(True)  # the server stays in the pool
            return Claim.USER_FULL if decision.user_full else Claim.NONE
        Project.objects.filter(pk=project.pk).update(
            runtime=row.runtime,
            runtime_state=row.runtime_state,
            data_dir=row.data_dir,
            server_password=str(row.server_password),
            # Its instance was built with the neutral config: rebuild it before the
            # first session (the credential step disposes it).
            rebuild_pending=True,
            status=Project.Status.STARTING,
            updated_at=timezone.now(),
        )
    logger.info("project %s: took pooled server %s", project.pk, row.key)
    return Claim.CLAIMED


def _fits(project: Project, runtime: Runtime) -> bool:
    """A project that never had a server (a Start after a stop keeps its own folder),
    whose needs the neutral server meets."""
    if project.runtime_state or project.bootstrap_session_id or project.initial_prompt_sent:
        return False
    if project.data_dir and Path(project.data_dir).exists():
        return False
    neutral = _spec(key="check", data_dir=Path(project.data_dir or "."), password="-")
    try:
        wanted = project_services.project_spec(project)
    except RuntimeFailure:
        return False  # its own start says why
    return runtime.can_serve(neutral, wanted)


# --- filling ----------------------------------------------------------------------------
def pool_fill() -> list[int]:
    """Bring the pool to its size: remove servers that died, stop those beyond the size,
    start new ones while there is room, STARTS_AT_ONCE at a time (call again once they
    are ready). Returns the ids of the servers started (to be warmed, ``server_warm``)."""
    # One filler at a time (worker start, a claim and the reconciler may ask at once).
    with file_lock("pool", timeout=FILL_LOCK_SECONDS, poll=0.05):
        servers_prune()
        size = pool_size()
        rows = list(PooledServer.objects.order_by("state", "-created_at"))
        for row in rows[size:] if len(rows) > size else []:  # starting ones first
            _server_remove(row, "the pool is smaller now")
        starting = sum(row.state != PooledServer.State.READY for row in rows[:size])
        started = []
        for _ in range(min(size - len(rows), STARTS_AT_ONCE - starting)):
            if not _room():
                break
            row = _server_start()
            if row is None:
                break
            started.append(row.pk)
    return started


def _room() -> bool:
    """A free slot stays free for a project start or a sign-in, and the pool never takes
    one that a waiting project is in line for."""
    usage = capacity.usage()
    return usage.held + usage.waiting + 1 < usage.limit


def _server_start() -> PooledServer | None:
    key = secrets.token_hex(8)
    try:
        capacity.slot_take(kind=POOL_SERVERS, key=key)
    except capacity.CapacityFull:
        return None
    runtime = get_runtime()
    row = PooledServer.objects.create(
        key=key,
        runtime=runtime.name,
        data_dir=str(_folder(key)),
        server_password=secrets.token_urlsafe(32),
    )
    spec = _spec(key=key, data_dir=Path(row.data_dir), password=str(row.server_password))
    try:
        state = runtime.start(project_services.spec_to_start(spec))
    except (RuntimeFailure, ValueError) as exc:
        logger.warning("the warm pool could not start a server: %s", exc)
        _server_remove(row, "it did not start")
        return None
    if not PooledServer.objects.filter(pk=row.pk).update(runtime_state=state.to_dict()):
        # Removed while it started (doce is stopping: pool_stop_all): nothing else
        # knows where it runs, so it is stopped here.
        logger.info("warm pool: server %s was removed while it started; stopping it", key)
        row.runtime_state = state.to_dict()
        _server_stop(row)
        return None
    capacity.slot_attach(kind=POOL_SERVERS, key=key, state=state)
    logger.info("warm pool: started server %s", key)
    return row


class Warm(enum.Enum):
    READY = "ready"
    LATER = "later"  # not answering, or still warming: ask again in WARM_RETRY_SECONDS
    GONE = "gone"  # it died, never came up, or was removed meanwhile


def server_warm(pk: int) -> Warm:
    """Warm a pooled server in two calls that never wait: once it answers, send the
    warm-up prompt (``starting`` -> ``warming``); once that prompt has reached its
    (unreachable) model, drop it and mark the server ready. ``Warm.LATER`` asks to be
    called again."""
    row = PooledServer.objects.filter(
        pk=pk, state__in=(PooledServer.State.STARTING, PooledServer.State.WARMING)
    ).first()
    if row is None or not row.runtime_state:
        return Warm.GONE
    runtime = get_runtime(row.runtime)
    state = RuntimeState.from_dict(row.runtime_state)
    age = (timezone.now() - row.created_at).total_seconds()
    try:
        with runtime.client(state, str(row.server_password)) as client:
            if row.state == PooledServer.State.STARTING:
                client.health(timeout=HEALTH_PROBE_SECONDS)
                session = _warm_start(client, row)
                return (
                    Warm.LATER
                    if PooledServer.objects.filter(pk=pk, state=PooledServer.State.STARTING).update(
                        state=PooledServer.State.WARMING, warm_session=session
                    )
                    else Warm.GONE
                )
            if not _warm_done(client, row.warm_session):
                if age <= settings.DOCE_OPENCODE_START_TIMEOUT:
                    return Warm.LATER
                logger.warning("warm pool: server %s did not finish warming", row.key)
            client.session_abort(row.warm_session)
            client.session_delete(row.warm_session)
    except (OpenCodeError, RuntimeFailure) as exc:
        message = exc.message
        if age > settings.DOCE_OPENCODE_START_TIMEOUT or not runtime.is_alive(state):
            _server_remove(row, f"it did not come up: {message}")
            return Warm.GONE
        return Warm.LATER
    updated = PooledServer.objects.filter(pk=pk, state=PooledServer.State.WARMING).update(
        state=PooledServer.State.READY, warm_session="", ready_at=timezone.now()
    )
    return Warm.READY if updated else Warm.GONE


def _warm_start(client: OpenCodeClient, row: PooledServer) -> str:
    """The warm-up: a throw-away session and a prompt to a model at a closed port. It
    builds the instance and loads everything a prompt needs (measured: the first real
    prompt then reaches its LLM about a second sooner than after building the instance
    alone); it names no user, and its session is deleted. Returns the session's id."""
    spec = _spec(key=row.key, data_dir=Path(row.data_dir), password=str(row.server_password))
    write_opencode_config(replace(spec, model=WARMUP_MODEL, custom_providers=(WARMUP_PROVIDER,)))
    session = client.session_create(title="warm-up")["id"]
    client.prompt_async(session, "warm-up", model=ModelRef.parse(WARMUP_MODEL))
    return session


def _warm_done(client: OpenCodeClient, session: str) -> bool:
    """The warm-up prompt reached its model: the call failed and OpenCode retries it, or
    it already ended with an error."""
    status = client.session_status().get(session) or {}
    if status.get("type") == "retry":
        return True
    last = client.messages(session, limit=1)
    info = last[-1].get("info", {}) if last else {}
    return info.get("role") == "assistant" and (
        bool(info.get("error")) or status.get("type", "idle") == "idle"
    )


# --- removing ---------------------------------------------------------------------------
def servers_prune() -> int:
    """Remove pooled servers that died, and those that never came up within the start
    timeout (their warming was lost); re-record the live ones' slots. Returns how many
    were removed."""
    removed = 0
    late = timezone.now() - timedelta(seconds=settings.DOCE_OPENCODE_START_TIMEOUT)
    for row in PooledServer.objects.all():
        state = RuntimeState.from_dict(row.runtime_state) if row.runtime_state else None
        try:
            alive = state is not None and get_runtime(row.runtime).is_alive(state)
        except (RuntimeFailure, ValueError):
            alive = False
        if alive and (row.state == PooledServer.State.READY or row.created_at >= late):
            # A slot freed meanwhile as dead (a slow start) is held again.
            capacity.slot_attach(kind=POOL_SERVERS, key=row.key, state=state)
            continue
        if state is None and row.created_at >= late:
            continue  # being started right now
        removed += _server_remove(row, "it died" if state is not None else "it never started")
    return removed


def servers_yield() -> bool:
    """Stop one pooled server (a starting one first) so that a project gets its slot;
    False when the pool has none."""
    with transaction.atomic():
        row = (
            PooledServer.objects.select_for_update(skip_locked=True)
            .order_by("-state", "-created_at")  # "starting", "warming" sort after "ready"
            .first()
        )
        if row is None:
            return False
        if not PooledServer.objects.filter(pk=row.pk).delete()[0]:
            return False
    _server_stop(row)
    logger.info("warm pool: stopped server %s to make room for a project", row.key)
    return True


capacity.yielder_register(servers_yield)


def pool_stop_all() -> int:
    """Stop every pooled server (shutting doce down: `make run`'s Ctrl-C); returns how many."""
    stopped = 0
    for row in PooledServer.objects.all():
        stopped += _server_remove(row, "doce was stopped")
    return stopped


def _server_remove(row: PooledServer, reason: str) -> int:
    if not PooledServer.objects.filter(pk=row.pk).delete()[0]:
        return 0  # claimed or removed meanwhile
    logger.info("warm pool: removing server %s: %s", row.key, reason)
    _server_stop(row)
    return 1


def _server_stop(row: PooledServer) -> None:
    """Stop the server and delete its folder, then free its slot (the row is gone)."""
    try:
        if row.runtime_state:
            get_runtime(row.runtime).remove(RuntimeState.from_dict(row.runtime_state))
        elif (Path(row.data_dir) / MARKER).is_file():
            shutil.rmtree(row.data_dir, ignore_errors=True)
    except RuntimeFailure as exc:
        logger.warning("warm pool: server %s did not stop: %s", row.key, exc.message)
    capacity.slot_release(kind=POOL_SERVERS, key=row.key)
