from django.apps import AppConfig


class QueueJobsConfig(AppConfig):
    name = "queue_jobs"
    verbose_name = "Pipeline jobs"

    def ready(self) -> None:
        from queue_jobs import receivers, steps  # noqa: F401  (registers steps and receivers)
