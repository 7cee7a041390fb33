"""Benchmark: how long a project page with a long stored conversation takes to render,
and in how many queries.

A throwaway user's stopped project gets ``--messages`` messages of ``--parts`` parts
each (every fifth a tool call with output, the rest text), written straight into doce's
copy of the conversation; its page is then requested through Django's test client
(the whole view, templates and middleware, as a browser's request would run, without
the network) ``--rounds`` times. Prints the median and worst time and the query count,
for the page as it opens (the latest messages) and for the whole conversation
(``?all=1``). Runs against the configured database and removes what it made.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from projects.models import Message, Part, Project


class Command(BaseCommand):
    help = "Measure the project page's render time with a long stored conversation."

    def add_arguments(self, parser):
        parser.add_argument("--messages", type=int, default=200)
        parser.add_argument("--parts", type=int, default=50, help="parts per message")
        parser.add_argument("--rounds", type=int, default=10)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, messages, parts, rounds, as_json, **options):
        if messages < 1 or parts < 1 or rounds < 1:
            raise CommandError("--messages, --parts and --rounds must be at least 1.")
        user = get_user_model().objects.create_user(
            username=f"bench-{secrets.token_hex(4)}", password=secrets.token_urlsafe(16)
        )
        try:
            project = _project(user, messages, parts)
            client = Client(HTTP_HOST="localhost")
            client.force_login(user)
            figures = {
                "latest": _measure(client, f"/projects/{project.pk}/", rounds),
                "whole": _measure(client, f"/projects/{project.pk}/?all=1", rounds),
                "setup": {"messages": messages, "parts": messages * parts, "rounds": rounds},
            }
        finally:
            user.delete()
        if as_json:
            self.stdout.write(json.dumps(figures, indent=2))
            return
        self.stdout.write(
            f"project page with {messages} messages, {messages * parts} stored parts "
            f"({rounds} requests each):"
        )
        for name, label in (("latest", "as it opens"), ("whole", "the whole conversation")):
            value = figures[name]
            self.stdout.write(
                f"  {label:<24} median {value['median_ms']:7.1f} ms   max "
                f"{value['max_ms']:7.1f} ms   {value['queries']} queries   "
                f"{value['kib']} KiB"
            )


def _project(user, messages: int, parts: int) -> Project:
    project = Project.objects.create(
        owner=user,
        name="Bench",
        prompt="Build a site",
        status=Project.Status.STOPPED,
        current_model_provider_id="stub",
        current_model_id="stub-model",
        server_password=secrets.token_urlsafe(24),
    )
    start = timezone.now()
    Message.objects.bulk_create(
        Message(
            project=project,
            opencode_id=f"msg_{index:06d}",
            session_id="ses_bench",
            role=Message.Role.ASSISTANT if index % 2 else Message.Role.USER,
            created_at=start + timedelta(milliseconds=index),
            completed_at=start,
        )
        for index in range(messages)
    )
    rows = []
    for message in Message.objects.filter(project=project):
        for index in range(parts):
            tool = index % 5 == 0
            rows.append(
                Part(
                    message=message,
                    opencode_id=f"prt_{message.pk}_{index}",
                    position=index,
                    kind=Part.Kind.TOOL if tool else Part.Kind.TEXT,
                    text="" if tool else "A sentence of the agent's reply. " * 6,
                    size=0 if tool else 198,
                    tool="bash" if tool else "",
                    title="Run the build" if tool else "",
                    status="completed" if tool else "",
                    input='{"command": "npm run build"}' if tool else "",
                    output="built in 1.2 s\n" * 20 if tool else "",
                    output_size=300 if tool else 0,
                )
            )
    Part.objects.bulk_create(rows, batch_size=2000)
    return project


def _measure(client: Client, url: str, rounds: int) -> dict:
    times, queries, size = [], 0, 0
    for _ in range(rounds):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise CommandError(f"{url} answered {response.status_code}")
        queries, size = len(captured), len(response.content)
    return {
        "median_ms": statistics.median(times),
        "max_ms": max(times),
        "queries": queries,
        "kib": size // 1024,
    }
