"""Stop the OpenCode server of every project that has one running (`make run`'s Ctrl-C
calls this): their projects show "Stopped" and start again with Start."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from projects.services import servers_stop_all


class Command(BaseCommand):
    help = "Stop every project's OpenCode server (the projects become 'stopped')."

    def handle(self, *args, **options):
        stopped, failed = servers_stop_all()
        self.stdout.write(f"Stopped {stopped} project server(s).")
        for project_id, reason in failed:
            self.stderr.write(f"Project {project_id}: not stopped: {reason}")
