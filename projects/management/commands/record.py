"""``manage.py record``: keep every running project's conversation and usage in doce's
database as it happens (projects.recorder). Each project worker starts one beside it."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from projects.recorder import record_forever


class Command(BaseCommand):
    help = "Keep the running projects' conversations and usage (started by each project worker)."

    def handle(self, *args, **options):
        record_forever()
