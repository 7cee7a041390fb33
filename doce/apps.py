import logging

from django.apps import AppConfig

logger = logging.getLogger("doce")


class DoceConfig(AppConfig):
    name = "doce"
    verbose_name = "doce"

    def ready(self) -> None:
        from doce import bootstrap, checks  # noqa: F401  (registers system checks)

        while bootstrap.PENDING_MESSAGES:
            logger.warning(bootstrap.PENDING_MESSAGES.pop(0))
