from django.apps import AppConfig


class TeamConfig(AppConfig):
    name = "doce.team"
    label = "team"
    verbose_name = "Team"

    def ready(self) -> None:
        # ready() is where Django wants signal receivers connected; the module imports
        # models, which the registry is still loading when apps.py is imported.
        from doce.team import receivers  # noqa: F401
