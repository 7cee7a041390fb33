"""Values every page may show."""

from __future__ import annotations

from doce.opencode.runtimes import sandbox_plan


def sandbox(request) -> dict:
    """The warning the admin index shows while the sandbox is off or cannot be set up
    (computed only when a template asks for it)."""

    def warning() -> str:
        if not sandbox_plan.enabled():
            return sandbox_plan.OFF_WARNING
        reason = sandbox_plan.problem()
        return (
            f"OpenCode servers cannot be sandboxed ({reason}): {sandbox_plan.INSTALL_HINT}."
            if reason
            else ""
        )

    return {"sandbox_warning": warning}
