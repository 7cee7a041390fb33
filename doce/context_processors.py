"""Values every page may show."""

from __future__ import annotations

from doce.opencode.runtimes import sandbox_limits, sandbox_plan


def sandbox(request) -> dict:
    """The warnings the admin index shows while the sandbox is off or cannot be set up,
    or servers run without some of their bounds (computed only when a template asks)."""

    def warning() -> str:
        if not sandbox_plan.enabled():
            return sandbox_plan.OFF_WARNING
        reason = sandbox_plan.problem()
        return (
            f"OpenCode servers cannot be sandboxed ({reason}): {sandbox_plan.INSTALL_HINT}."
            if reason
            else ""
        )

    def bounds_warning() -> str:
        return sandbox_limits.warning(sandboxed=sandbox_plan.enabled())

    return {"sandbox_warning": warning, "bounds_warning": bounds_warning}
