from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"

    def ready(self) -> None:
        # Importing these registers the pipeline steps with the job engine and connects
        # the receivers that carry connection changes to running projects.
        from projects import receivers, steps  # noqa: F401
