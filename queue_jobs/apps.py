from django.apps import AppConfig


class QueueJobsConfig(AppConfig):
    name = "queue_jobs"
    verbose_name = "Pipeline jobs"
