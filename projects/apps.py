from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "projects"

    def ready(self) -> None:
        # Importing these registers the pipeline steps with the job engine, connects
        # the receivers that carry connection changes to running projects, and lets the
        # warm pool's servers give way to any start the server bound refuses.
        from doce.opencode.runtimes import exits
        from projects import pool, receivers, reconcile, steps  # noqa: F401

        # A server that dies is seen the moment its spawner collects its exit status.
        exits.listener_register(reconcile.project_server_exited)
