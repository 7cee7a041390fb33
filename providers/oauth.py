"""OAuth sign-ins through OpenCode's own flow, one short-lived OpenCode server per flow.

OpenCode keeps one pending authorization per provider per server, in memory, and its
``auto`` callback blocks until the user approves; so each flow gets its own server with a
throw-away data folder (``DOCE_DATA_DIR/oauth/<flow id>``):

1. ``oauth_flow_start`` (web): a row in ``starting``; the ``providers.oauth_flow_run``
   task (defined here, beside its body) starts the server, asks
   ``/provider/{id}/oauth/authorize`` and stores the URL and instructions
   (``pending``). For an ``auto`` flow the same task then waits on the blocking
   callback, while the page polls.
2. A ``code`` flow finishes when the user pastes the code (``oauth_flow_submit_code``).
3. On success the tokens are read from that server's auth.json, stored encrypted as a
   connection, and the server and its folder are removed. Cancel, failure and expiry
   (``DOCE_OAUTH_FLOW_TTL``) remove them too; ``oauth_flows_reap`` catches leftovers.

Every state change is a conditional UPDATE, so a cancel racing the task, a redelivered
task or a double submit does no harm.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import shutil
import time
from datetime import datetime, timedelta
from pathlib import Path

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from doce import capacity
from doce.opencode import (
    Credential,
    OAuthFlowError,
    OpenCodeError,
    OpenCodeTimeout,
    WellKnownCredential,
    credential_from_json,
)
from doce.opencode.runtimes import (
    Layout,
    LocalRuntime,
    RuntimeFailure,
    RuntimeState,
    ServerSpec,
    scratch_dir,
)
from providers import services
from providers.audit import audit_record
from providers.catalog import AuthMethod, CatalogEntry
from providers.catalog.fetch import PLACEHOLDER_MODEL
from providers.models import AuditEvent, OAuthFlow, ProviderConnection
from providers.oauth_guard import (
    flows_check_capacity,
    local_callback,
    local_callback_refusal,
)
from providers.selectors import connection_for

logger = logging.getLogger(__name__)

State = OAuthFlow.State
Action = AuditEvent.Action
# Exchanging a pasted code is one request from OpenCode to the provider.
CODE_CALLBACK_TIMEOUT = 30.0
# The task that waits on an auto flow expires it itself; the reaper waits this much more.
REAP_GRACE = timedelta(seconds=30)
# Finished flows are kept this long for the record (no secret in them).
KEEP_FINISHED = timedelta(days=30)
# A catalog server lives for seconds; a folder older than this is a leftover.
CATALOG_LEFTOVER_AGE = 3600
# A flow's folder appears a moment after its row: younger folders are left alone.
FOLDER_MIN_AGE = 120
_SERVER_RECORD = "server.json"  # written by the local runtime into each data folder
_CANCELLABLE = (State.STARTING, State.PENDING)
# Each flow's server takes a slot of the server ledger (doce.capacity); refused, not
# queued, when doce runs all the servers it can hold.
OAUTH_SERVERS = capacity.kind_register("oauth_flow")

# What a failed sign-in tells its user: what happened and what to do, in plain words. The
# technical detail (OpenCode's error) goes beside it into the audit log, which staff
# see folded away on the flow page (``flow_failure_detail``) and in the admin.
START_REFUSED = (
    "The sign-in could not start with the details you gave. Check them (an address or an "
    "account id, if the form asked for one) and try again."
)
START_FAILED = (
    "The sign-in could not start: the provider's sign-in service did not answer as "
    "expected. Try again in a few minutes; if it keeps failing, tell your administrator."
)
NOT_A_SIGN_IN = "This method connects with an API key, not a sign-in: use the key form instead."
NOT_A_WEB_URL = (
    "The provider gave a sign-in address that is not a web URL, so doce did not open it. "
    "Tell your administrator."
)
CODE_REJECTED = "The provider did not accept the sign-in (a wrong or expired code?). Try again."
NOT_COMPLETED = "The sign-in could not be completed. Try again."
SERVER_LOST = (
    "The sign-in stopped before it was finished (its server went away). Start it again; if "
    "it keeps happening, tell your administrator."
)
TOKENS_UNREADABLE = (
    "The sign-in finished, but its tokens could not be read. Try again; if it keeps "
    "happening, tell your administrator."
)


class OAuthBusy(Exception):
    """The flow is not waiting for a code (already completing, finished or expired)."""


def flow_root() -> Path:
    return scratch_dir("oauth")


def _runtime() -> LocalRuntime:
    # Always the local runtime: the tokens are read from the server's own auth.json.
    return LocalRuntime()


def _spec(flow: OAuthFlow) -> ServerSpec:
    return ServerSpec(
        name=f"oauth-{flow.pk.hex}",
        data_dir=Path(flow.data_dir),
        model=PLACEHOLDER_MODEL,
        password=str(flow.server_password),
    )


# --- web side -----------------------------------------------------------------------------
def oauth_flow_start(
    *,
    user,
    entry: CatalogEntry,
    method: AuthMethod,
    inputs: dict[str, str],
    browser_on_host: bool = False,
) -> OAuthFlow:
    """Create the flow and queue the task that starts its server. An older flow of the
    user for the same provider is cancelled (one pending flow per provider).
    ``oauth_guard.OAuthLimit`` when the user or doce runs as many sign-ins as allowed.
    ``browser_on_host``: the request came from a browser on the doce host (a local-port
    callback can work for it)."""
    for old in OAuthFlow.objects.filter(user=user, provider_id=entry.id, state__in=_CANCELLABLE):
        oauth_flow_cancel(flow=old, reason="A new sign-in was started.")
    flow = OAuthFlow(
        user=user,
        provider_id=entry.id,
        method=method.index,
        method_label=method.label[:200],
        inputs=dict(inputs),
        expires_at=timezone.now() + timedelta(seconds=settings.DOCE_OAUTH_FLOW_TTL),
        server_password=secrets.token_urlsafe(24),
    )
    flow.data_dir = str(flow_root() / flow.pk.hex)
    with transaction.atomic():
        # The user's row, locked, serialises one user's starts, so two at once cannot both
        # pass the per-user bound (on PostgreSQL; SQLite has no row locks).
        get_user_model().objects.select_for_update().filter(pk=user.pk).first()
        flows_check_capacity(user=user)
        flow.save()
        audit_record(
            action=Action.OAUTH_STARTED,
            actor=user,
            user=user,
            provider_id=entry.id,
            detail={"method": method.label, "flow": str(flow.pk)},
        )
    transaction.on_commit(lambda: oauth_flow_task.delay(str(flow.pk), browser_on_host))
    return flow


def oauth_flow_cancel(*, flow: OAuthFlow, reason: str = "Cancelled.") -> bool:
    """Cancel a flow that has not started completing; its server and folder go."""
    return _finish(flow, State.CANCELLED, reason, allowed=_CANCELLABLE)


def oauth_flows_stop_all() -> int:
    """doce is stopping (``stop_servers``): every sign-in still going ends, with its
    server; the user starts it again."""
    flows = OAuthFlow.objects.filter(state__in=OAuthFlow.ACTIVE_STATES)
    return sum(
        _finish(flow, State.FAILED, "doce was stopped meanwhile: start the sign-in again.")
        for flow in flows.select_related("user")
    )


@sensitive_variables("code")
def oauth_flow_submit_code(*, flow: OAuthFlow, code: str) -> OAuthFlow:
    """Finish a ``code`` flow with the code the user pasted. OAuthBusy when the flow is
    not waiting for one (a double submit: the first request is completing it)."""
    claimed = OAuthFlow.objects.filter(
        pk=flow.pk, state=State.PENDING, kind="code", expires_at__gt=timezone.now()
    ).update(state=State.COMPLETING, updated_at=timezone.now())
    if not claimed:
        flow.refresh_from_db()
        raise OAuthBusy(flow.state)
    flow.state = State.COMPLETING
    try:
        with _client(flow) as client:
            client.oauth_callback(
                flow.provider_id, flow.method, code=code, timeout=CODE_CALLBACK_TIMEOUT
            )
    except OAuthFlowError as exc:
        _finish(
            flow,
            State.FAILED,
            _callback_failure(exc),
            detail=technical(exc),
            allowed=(State.COMPLETING,),
        )
    except (OpenCodeError, RuntimeFailure) as exc:
        _finish(flow, State.FAILED, SERVER_LOST, detail=technical(exc), allowed=(State.COMPLETING,))
    else:
        _complete(flow)
    flow.refresh_from_db()
    return flow


def _callback_failure(exc: OAuthFlowError) -> str:
    if exc.name == "ProviderAuthOauthCallbackFailed":
        return CODE_REJECTED
    return NOT_COMPLETED


def technical(exc: Exception) -> str:
    """An error as staff need it to find the cause: its kind, OpenCode's name and status,
    its message (OpenCode's client scrubs them; the audit log redacts again)."""
    parts = [type(exc).__name__]
    name, status = getattr(exc, "name", None), getattr(exc, "status_code", None)
    if name or status:
        parts.append(" ".join(str(part) for part in (status, name) if part))
    message = str((getattr(exc, "data", None) or {}).get("message") or exc)
    return f"{': '.join(parts)}: {message}"[:2000]


# --- worker side --------------------------------------------------------------------------
# acks_late: a flow whose worker died is picked up again and continues (the server it
# started keeps running in its own process group; authorize is idempotent per server).
# Routed to settings.DOCE_OAUTH_QUEUE (CELERY_TASK_ROUTES): the sign-in worker's threads
# wait for approvals, the project worker's processes never do.
@shared_task(name="providers.oauth_flow_run", acks_late=True, ignore_result=True)
def oauth_flow_task(flow_id: str, browser_on_host: bool = False) -> str:
    """Start an OAuth flow's server and authorize; wait for the approval of ``auto``
    flows (up to DOCE_OAUTH_FLOW_TTL)."""
    return oauth_flow_run(flow_id, browser_on_host=browser_on_host)


@shared_task(name="providers.reap_oauth_flows", acks_late=False, ignore_result=True)
def reap_oauth_flows() -> int:
    """Expire abandoned OAuth flows and remove leftover servers and folders."""
    return oauth_flows_reap()


def oauth_flow_run(flow_id: str, *, browser_on_host: bool = False) -> str:
    """The task's body: start the server and authorize; for ``auto`` flows, then wait for
    the approval. Safe to run again for the same flow (a redelivered task)."""
    flow = OAuthFlow.objects.filter(pk=flow_id).first()
    if flow is None or not flow.is_active:
        return "gone"
    if flow.state == State.STARTING:
        _authorize(flow, browser_on_host=browser_on_host)
        flow.refresh_from_db()
    if flow.state == State.PENDING and flow.kind == "auto":
        _wait_for_approval(flow)
        flow.refresh_from_db()
    return flow.state


def _authorize(flow: OAuthFlow, *, browser_on_host: bool) -> None:
    runtime = _runtime()
    spec = _spec(flow)
    try:
        capacity.slot_take(kind=OAUTH_SERVERS, key=flow.pk.hex, owner_id=flow.user_id)
    except capacity.CapacityFull as exc:
        _finish(flow, State.FAILED, f"The sign-in could not start: {exc}")
        return
    try:
        state = runtime.start(spec)  # a leftover server of a redelivered task is stopped
        capacity.slot_attach(kind=OAUTH_SERVERS, key=flow.pk.hex, state=state)
        if not OAuthFlow.objects.filter(pk=flow.pk, state=State.STARTING).update(
            runtime_state=state.to_dict(), updated_at=timezone.now()
        ):
            runtime.remove(state)  # cancelled meanwhile
            return
        flow.runtime_state = state.to_dict()
        runtime.wait_healthy(state, spec.password)
        # The first request builds OpenCode's instance (its plugins load, the auth
        # plugin's authorize runs): on a busy host that takes as long as a start can.
        first_request = max(
            settings.DOCE_OPENCODE_REQUEST_TIMEOUT, settings.DOCE_OPENCODE_START_TIMEOUT
        )
        with runtime.client(state, spec.password, timeout=first_request) as client:
            step = client.oauth_authorize(flow.provider_id, flow.method, flow.inputs or None)
    except OAuthFlowError as exc:
        _finish(flow, State.FAILED, START_REFUSED, detail=technical(exc))
        return
    except (OpenCodeError, RuntimeFailure) as exc:
        if _still(flow, State.STARTING):
            _finish(flow, State.FAILED, START_FAILED, detail=technical(exc))
        else:
            _cleanup(flow)
        return
    if step is None:
        _finish(flow, State.FAILED, NOT_A_SIGN_IN)
        return
    if not step.url.startswith(("https://", "http://")):  # it becomes a link in the page
        detail = f"OpenCode answered a sign-in address that is not a web URL: {step.url[:200]}"
        _finish(flow, State.FAILED, NOT_A_WEB_URL, detail=detail)
        return
    kind = step.method if step.method in ("auto", "code") else "code"
    where = local_callback(step.url)
    refusal = where and local_callback_refusal(where, browser_on_host=browser_on_host)
    if refusal:
        # The address stays on the row: the connect page labels the method from it.
        OAuthFlow.objects.filter(pk=flow.pk, state=State.STARTING).update(
            kind=kind, url=step.url[:4000], updated_at=timezone.now()
        )
        _finish(flow, State.FAILED, refusal)
        return
    if not OAuthFlow.objects.filter(pk=flow.pk, state=State.STARTING).update(
        state=State.PENDING,
        kind=kind,
        url=step.url[:4000],
        instructions=(step.instructions or "")[:2000],
        updated_at=timezone.now(),
    ):
        _cleanup(flow)


def _wait_for_approval(flow: OAuthFlow) -> None:
    remaining = (flow.expires_at - timezone.now()).total_seconds()
    if remaining <= 0:
        _finish(flow, State.EXPIRED, "The sign-in expired before it was approved.")
        return
    try:
        with _client(flow, oauth_callback_timeout=remaining) as client:
            client.oauth_callback(flow.provider_id, flow.method, timeout=remaining)
    except OpenCodeTimeout:
        _finish(flow, State.EXPIRED, "The sign-in expired before it was approved.")
        return
    except OAuthFlowError as exc:
        _finish(flow, State.FAILED, _callback_failure(exc), detail=technical(exc))
        return
    except (OpenCodeError, RuntimeFailure) as exc:
        if _still(flow, State.PENDING):  # else cancelled: the cancel stopped the server
            _finish(flow, State.FAILED, SERVER_LOST, detail=technical(exc))
        else:
            _cleanup(flow)
        return
    if OAuthFlow.objects.filter(pk=flow.pk, state=State.PENDING).update(
        state=State.COMPLETING, updated_at=timezone.now()
    ):
        flow.state = State.COMPLETING
        _complete(flow)
    else:
        _cleanup(flow)


# --- completion ---------------------------------------------------------------------------
def _complete(flow: OAuthFlow) -> None:
    """The callback succeeded: move the tokens from auth.json into a connection."""
    try:
        connection = _store_tokens(flow, _read_tokens(flow))
    except (OSError, ValueError, KeyError, ValidationError) as exc:
        logger.warning("OAuth flow %s: could not store the tokens: %s", flow.pk, type(exc))
        detail = f"{type(exc).__name__} while reading or storing the tokens"
        _finish(flow, State.FAILED, TOKENS_UNREADABLE, detail=detail, allowed=(State.COMPLETING,))
        return
    now = timezone.now()
    OAuthFlow.objects.filter(pk=flow.pk, state=State.COMPLETING).update(
        state=State.SUCCEEDED,
        connection=connection,
        finished_at=now,
        updated_at=now,
        error_message="",
    )
    audit_record(
        action=Action.OAUTH_COMPLETED,
        actor=flow.user,
        connection=connection,
        detail={"method": flow.method_label, "flow": str(flow.pk)},
    )
    _cleanup(flow)


@sensitive_variables("data")
def _read_tokens(flow: OAuthFlow) -> Credential:
    """The credential the sign-in left in its server's auth.json."""
    data = json.loads(Layout(Path(flow.data_dir)).auth_file.read_text())
    entry = data.get(flow.provider_id)
    if entry is None and len(data) == 1:  # a plugin that stores under another id
        entry = next(iter(data.values()))
    credential = credential_from_json(entry)
    if isinstance(credential, WellKnownCredential):
        raise ValueError("a sign-in does not leave a well-known entry")
    return credential


@sensitive_variables("credential", "values")
def _store_tokens(flow: OAuthFlow, credential: Credential) -> ProviderConnection:
    values = services.credential_fields(credential)
    metadata = {k: v for k, v in (flow.inputs or {}).items() if isinstance(v, str)}
    user = flow.user
    existing = connection_for(user=user, provider_id=flow.provider_id)
    if existing is None:
        try:
            return services.connection_create(
                user=user, provider_id=flow.provider_id, metadata=metadata, **values
            )
        except ValidationError as error:
            existing = connection_for(user=user, provider_id=flow.provider_id)
            if existing is None or set(error.message_dict) != {"provider_id"}:
                raise
    return services.connection_update(connection=existing, actor=user, metadata=metadata, **values)


# --- finishing and cleaning up -----------------------------------------------------------
def _still(flow: OAuthFlow, state: str) -> bool:
    return OAuthFlow.objects.filter(pk=flow.pk, state=state).exists()


def _finish(
    flow: OAuthFlow,
    state: str,
    message: str,
    *,
    detail: str = "",
    allowed=OAuthFlow.ACTIVE_STATES,
) -> bool:
    """Move the flow from one of ``allowed`` to a final ``state``, then remove its server
    and folder; False (and nothing done) when it had already moved on. ``message`` is
    for the user; ``detail``, the technical cause, goes to the audit log only."""
    now = timezone.now()
    done = OAuthFlow.objects.filter(pk=flow.pk, state__in=allowed).update(
        state=state, error_message=message[:2000], finished_at=now, updated_at=now
    )
    if not done:
        return False
    flow.state, flow.error_message = state, message
    audit_record(
        action=Action.OAUTH_FAILED,
        actor=flow.user if state == State.CANCELLED else None,
        user=flow.user,
        provider_id=flow.provider_id,
        detail={"state": state, "message": message, "flow": str(flow.pk)}
        | ({"detail": detail} if detail else {}),
    )
    _cleanup(flow)
    return True


def flow_failure_detail(flow: OAuthFlow) -> str:
    """The technical detail recorded when ``flow`` failed ("" when none): for staff."""
    if flow.is_active or flow.state == State.SUCCEEDED:
        return ""
    event = (
        AuditEvent.objects.filter(
            action=Action.OAUTH_FAILED, user_id=flow.user_id, detail__flow=str(flow.pk)
        )
        .order_by("-pk")
        .values_list("detail", flat=True)
        .first()
    )
    return str((event or {}).get("detail") or "")


def _cleanup(flow: OAuthFlow) -> None:
    """Stop the flow's server (if it is still its own) and delete its folder."""
    runtime_state = (
        OAuthFlow.objects.filter(pk=flow.pk).values_list("runtime_state", flat=True).first()
        or flow.runtime_state
    )
    _remove_folder(Path(flow.data_dir), runtime_state or None)
    capacity.slot_release(kind=OAUTH_SERVERS, key=flow.pk.hex)


def _remove_folder(data_dir: Path, runtime_state: dict | None) -> None:
    if runtime_state is None:
        with contextlib.suppress(OSError, ValueError):
            runtime_state = json.loads((data_dir / _SERVER_RECORD).read_text())
    if runtime_state:
        try:
            _runtime().remove(RuntimeState.from_dict(runtime_state))
        except (RuntimeFailure, TypeError) as exc:
            logger.warning("could not stop the server of %s: %s", data_dir, exc)
    # Only folders under our roots, and only ones a runtime prepared.
    if data_dir.exists() and data_dir.parent in (flow_root(), scratch_dir("catalog")):
        shutil.rmtree(data_dir, ignore_errors=True)


@contextlib.contextmanager
def _client(flow: OAuthFlow, **options):
    runtime_state = flow.runtime_state or (
        OAuthFlow.objects.filter(pk=flow.pk).values_list("runtime_state", flat=True).first()
    )
    if not runtime_state:
        raise RuntimeFailure("the sign-in server is not running")
    client = _runtime().client(
        RuntimeState.from_dict(runtime_state), str(flow.server_password), **options
    )
    try:
        yield client
    finally:
        client.close()


def _folders_older_than(root: Path, seconds: float) -> list[Path]:
    found = []
    with contextlib.suppress(OSError):
        for folder in sorted(root.iterdir()):
            with contextlib.suppress(OSError):
                if folder.is_dir() and time.time() - folder.stat().st_mtime > seconds:
                    found.append(folder)
    return found


def oauth_flows_reap(*, now: datetime | None = None) -> int:
    """Expire flows past their time, remove the servers and folders nothing needs any
    more (flows that ended, vanished rows, old catalog servers), forget old flows.
    Returns the number of flows expired and folders removed."""
    now = now or timezone.now()
    count = 0
    for flow in OAuthFlow.objects.filter(
        state__in=OAuthFlow.ACTIVE_STATES, expires_at__lt=now - REAP_GRACE
    ):
        count += _finish(flow, State.EXPIRED, "The sign-in expired before it was approved.")
    active = {
        flow_id.hex
        for flow_id in OAuthFlow.objects.filter(state__in=OAuthFlow.ACTIVE_STATES).values_list(
            "pk", flat=True
        )
    }
    for folder in _folders_older_than(flow_root(), FOLDER_MIN_AGE):
        if folder.name not in active:
            _remove_folder(folder, None)
            count += 1
    for folder in _folders_older_than(scratch_dir("catalog"), CATALOG_LEFTOVER_AGE):
        _remove_folder(folder, None)
        count += 1
    OAuthFlow.objects.exclude(state__in=OAuthFlow.ACTIVE_STATES).filter(
        created_at__lt=now - KEEP_FINISHED
    ).delete()
    return count
