"""GET /healthz: can doce reach its database, its broker (round trip) and OpenCode, can it
sandbox OpenCode servers and bound them, and do its encryption keys open the stored
secrets?

Anyone may ask (container health checks, load balancers): they get the overall status
and one ``{"ok": true|false}`` per component. Staff users also get the details (paths,
versions, error messages), which are not for the public.
"""

from __future__ import annotations

import contextlib
import time

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.db.models import Q
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from doce import encrypted_fields
from doce.celery import app
from doce.opencode import binary as opencode_bin
from doce.opencode.runtimes import sandbox_limits, sandbox_plan
from doce.tasks import ping

BROKER_ROUND_TRIP_TIMEOUT = 5.0
KEYRING_SAMPLE_ROWS = 20  # rows with encrypted values tried per probe, at most


def check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"ok": True, "vendor": connection.vendor}


def check_broker() -> dict:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    started = time.monotonic()
    result = ping.apply_async(expires=BROKER_ROUND_TRIP_TIMEOUT)
    try:
        answer = result.get(timeout=BROKER_ROUND_TRIP_TIMEOUT, interval=0.05)
    finally:
        with contextlib.suppress(Exception):  # the file backend has nothing to forget
            result.forget()
    if answer != "pong":
        raise RuntimeError(f"unexpected answer {answer!r}")
    return {
        "ok": True,
        "transport": "embedded"
        if settings.DOCE_EMBEDDED_BROKER
        else app.conf.broker_url.split(":")[0],
        "round_trip_ms": round((time.monotonic() - started) * 1000, 1),
    }


def check_opencode() -> dict:
    path = opencode_bin.find()
    if path is None:
        raise RuntimeError("binary not found: run `make setup` or set DOCE_OPENCODE_BIN")
    return {"ok": True, "path": str(path), "version": opencode_bin.version(path)}


def check_sandbox() -> dict:
    """Down when servers cannot be sandboxed (they are then refused); ok but flagged
    when the operator turned the sandbox off."""
    if not sandbox_plan.enabled():
        return {"ok": True, "enabled": False, "warning": sandbox_plan.OFF_WARNING}
    reason = sandbox_plan.problem()
    if reason:
        raise RuntimeError(f"the sandbox cannot be set up: {reason}; {sandbox_plan.INSTALL_HINT}")
    return {"ok": True, "enabled": True}


def check_bounds() -> dict:
    """Ok but flagged when servers run without some of their bounds (DOCE_LIMITS=auto);
    down when DOCE_LIMITS=required refuses to start them for it."""
    found = sandbox_limits.problems(sandboxed=sandbox_plan.enabled())
    if found and sandbox_limits.required():
        raise RuntimeError(
            f"DOCE_LIMITS=required and the bounds cannot be enforced: {'; '.join(found)}"
        )
    report = {"ok": True, "required": sandbox_limits.required(), "enforced": not found}
    if found:
        report["warning"] = sandbox_limits.warning(sandboxed=sandbox_plan.enabled())
    return report


def check_keyring() -> dict:
    """Down when the configured keys cannot open stored secrets (DOCE_ENCRYPTION_KEYS
    replaced rather than rotated). Tries the newest rows of every model with encrypted
    columns, KEYRING_SAMPLE_ROWS in all: one bounded query per such model."""
    models = list(encrypted_fields.encrypted_models())
    rows_per_model = max(1, KEYRING_SAMPLE_ROWS // max(1, len(models)))
    sampled = undecryptable = 0
    for model, names in models:
        stored = Q()
        for name in names:
            stored |= Q(**{f"{name}__isnull": False}) & ~Q(**{name: ""})
        rows = model._base_manager.filter(stored).order_by("-pk").values_list(*names)
        for row in rows[:rows_per_model]:
            values = [value for value in row if value is not None and value != ""]
            sampled += len(values)
            undecryptable += sum(encrypted_fields.is_undecryptable(value) for value in values)
    if undecryptable:
        raise RuntimeError(
            f"{undecryptable} of {sampled} sampled values cannot be decrypted: is "
            "DOCE_ENCRYPTION_KEYS the key they were made with?"
        )
    return {"ok": True, "sampled": sampled}


CHECKS = {
    "database": check_database,
    "broker": check_broker,
    "opencode": check_opencode,
    "sandbox": check_sandbox,
    "bounds": check_bounds,
    "keyring": check_keyring,
}


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    if name == "TimeoutError":
        return "no worker answered a ping task in time (is the Celery worker running?)"
    return f"{name}: {exc}"[:300]


def _shows_details(request) -> bool:
    try:
        return request.user.is_active and request.user.is_staff
    except DatabaseError:  # no database, no session: nobody is known to be staff
        return False


@login_not_required
@never_cache
@require_GET
def healthz(request):
    report: dict[str, dict] = {}
    for name, check in CHECKS.items():
        try:
            report[name] = check()
        except Exception as exc:  # every failure is reported, none crashes the probe
            report[name] = {"ok": False, "error": _describe(exc)}
    healthy = all(part["ok"] for part in report.values())
    if not _shows_details(request):
        report = {name: {"ok": part["ok"]} for name, part in report.items()}
    return JsonResponse(
        {"status": "ok" if healthy else "error", **report}, status=200 if healthy else 503
    )
