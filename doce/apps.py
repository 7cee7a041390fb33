import logging

from django.apps import AppConfig

logger = logging.getLogger("doce")


class DoceConfig(AppConfig):
    name = "doce"
    verbose_name = "doce"

    def ready(self) -> None:
        from doce import bootstrap, checks  # noqa: F401  (registers system checks)
        from doce.opencode.runtimes import sandbox_plan  # needs the settings: here, not above

        while bootstrap.PENDING_MESSAGES:
            logger.warning(bootstrap.PENDING_MESSAGES.pop(0))
        if not sandbox_plan.enabled():
            logger.warning(sandbox_plan.OFF_WARNING)
