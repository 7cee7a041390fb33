"""Stop every OpenCode server doce started (`make run`'s Ctrl-C calls this): projects'
(they show "Stopped" and start again with Start), the warm pool's (it fills again when a
worker starts), sign-ins' (they end; the user starts them again) and catalog reads' (a
worker stopped in the middle of one leaves its server)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from projects.pool import pool_stop_all
from projects.services import servers_stop_all
from providers.catalog.fetch import catalog_servers_stop_all
from providers.oauth import oauth_flows_stop_all


class Command(BaseCommand):
    help = (
        "Stop every OpenCode server: projects' (they become 'stopped'), the warm pool's, "
        "sign-ins' and catalog reads'."
    )

    def handle(self, *args, **options):
        stopped, failed = servers_stop_all()
        self.stdout.write(f"Stopped {stopped} project server(s).")
        for project_id, reason in failed:
            self.stderr.write(f"Project {project_id}: not stopped: {reason}")
        pooled = pool_stop_all()
        if pooled:
            self.stdout.write(f"Stopped {pooled} server(s) of the warm pool.")
        if signins := oauth_flows_stop_all():
            self.stdout.write(f"Ended {signins} sign-in(s) still going.")
        if catalog := catalog_servers_stop_all():
            self.stdout.write(f"Stopped {catalog} catalog server(s).")
