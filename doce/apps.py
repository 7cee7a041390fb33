import logging

from django.apps import AppConfig

logger = logging.getLogger("doce")


class DoceConfig(AppConfig):
    name = "doce"
    verbose_name = "doce"

    def ready(self) -> None:
        # ready() is where Django wants start-up registration: apps.py is imported while
        # the app registry is still loading, so it imports nothing of the app's own.
        from doce import bootstrap, checks  # noqa: F401  (registers system checks)
        from doce.opencode.runtimes import sandbox_plan  # see above: not at module level

        while bootstrap.PENDING_MESSAGES:
            logger.warning(bootstrap.PENDING_MESSAGES.pop(0))
        if not sandbox_plan.enabled():
            logger.warning(sandbox_plan.OFF_WARNING)
