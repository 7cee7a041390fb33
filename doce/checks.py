"""System checks: loud, specific failures for an unsafe or broken configuration."""

from __future__ import annotations

import json
import os

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register

from doce.opencode import binary as opencode_bin
from doce.opencode.runtimes import sandbox_limits, sandbox_plan


@register(Tags.security, deploy=False)
def check_production_settings(app_configs, **kwargs):
    problems = []
    if settings.DEBUG:
        return problems
    if "*" in settings.ALLOWED_HOSTS:
        problems.append(
            Warning(
                "ALLOWED_HOSTS contains '*' with DEBUG=false.",
                hint="Set ALLOWED_HOSTS to the host names doce is served under.",
                id="doce.W001",
            )
        )
    if (
        settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
        and settings.DOCE_REQUIRE_POSTGRES
    ):
        problems.append(
            Error(
                "SQLite is configured but DOCE_REQUIRE_POSTGRES is set.",
                hint="Set DATABASE_URL=postgres://user:password@host:5432/doce.",
                id="doce.E002",
            )
        )
    return problems


@register()
def check_data_dir(app_configs, **kwargs):
    if not os.access(settings.DOCE_DATA_DIR, os.W_OK):
        return [
            Error(
                f"DOCE_DATA_DIR {settings.DOCE_DATA_DIR} is not writable.",
                hint="Point DOCE_DATA_DIR at a folder the doce user can write.",
                id="doce.E001",
            )
        ]
    return []


@register()
def check_opencode_binary(app_configs, **kwargs):
    if opencode_bin.find() is None:
        return [
            Warning(
                "The OpenCode binary was not found; projects cannot start.",
                hint="Run `make setup` (installs opencode-ai from package.json) or set "
                "DOCE_OPENCODE_BIN to the binary's path.",
                id="doce.W002",
            )
        ]
    return []


@register()
def check_operator_opencode_config(app_configs, **kwargs):
    """DOCE_OPENCODE_CONFIG must be a readable JSON object: otherwise every project start
    would fail later, one by one."""
    path = settings.DOCE_OPENCODE_CONFIG
    if not path:
        return []
    try:
        with open(path) as handle:
            value = json.load(handle)
    except (OSError, ValueError) as exc:
        return [
            Error(
                f"DOCE_OPENCODE_CONFIG={path} cannot be read as JSON: {exc}",
                hint="Point it at a JSON file (an opencode.json fragment) or unset it.",
                id="doce.E003",
            )
        ]
    if not isinstance(value, dict):
        return [Error(f"DOCE_OPENCODE_CONFIG={path} must hold a JSON object.", id="doce.E003")]
    return []


@register()
def check_sandbox(app_configs, **kwargs):
    """Say it at start-up: servers unsandboxed on purpose, or not startable at all."""
    if not sandbox_plan.enabled():
        return [Warning(sandbox_plan.OFF_WARNING, id="doce.W010")]
    reason = sandbox_plan.problem()
    if reason:
        return [
            Warning(
                f"OpenCode servers cannot be sandboxed ({reason}): projects, sign-ins and "
                "the provider catalog will not start.",
                hint=sandbox_plan.INSTALL_HINT,
                id="doce.W011",
            )
        ]
    return []


@register()
def check_bounds(app_configs, **kwargs):
    """Say it at start-up: servers would run without some of their bounds (auto), or
    will be refused (DOCE_LIMITS=required)."""
    found = sandbox_limits.problems(sandboxed=sandbox_plan.enabled())
    if not found:
        return []
    if sandbox_limits.required():
        return [
            Warning(
                "DOCE_LIMITS=required and OpenCode servers' bounds cannot be enforced "
                f"({'; '.join(found)}): projects, sign-ins and the provider catalog will "
                "not start.",
                hint=sandbox_limits.HINT,
                id="doce.W013",
            )
        ]
    return [
        Warning(
            sandbox_limits.warning(sandboxed=sandbox_plan.enabled()),
            hint=sandbox_limits.HINT,
            id="doce.W012",
        )
    ]
