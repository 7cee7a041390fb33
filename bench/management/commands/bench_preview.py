"""Benchmark: how long the preview takes to show the agent's edit in a real browser.

A stub LLM makes a real OpenCode server (in its sandbox, default settings) write
``index.html`` with a bash tool call, once per round; Chromium (Playwright) has the
project page open, with doce's ASGI application and the preview server under uvicorn in
this process. The figures are from the file's mtime to the preview iframe starting its
reload (doce noticed and told the page) and to the new page loaded in it (median, p95).
Runs against the configured database with a throwaway user, and removes it afterwards.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from bench import preview as bench_preview
from bench import stream as bench_stream
from bench.stub_llm import StubLLM


class Command(BaseCommand):
    help = "Measure the live preview's delay: the agent's file write -> the iframe shows it."

    def add_arguments(self, parser):
        parser.add_argument("--rounds", type=int, default=10, help="edits to measure")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the figures as JSON"
        )

    def handle(self, *args, rounds, as_json, **options):
        if rounds < 1:
            raise CommandError("--rounds must be >= 1")
        user = get_user_model().objects.create_user(
            username=f"bench-{secrets.token_hex(4)}",
            password=secrets.token_urlsafe(16),
            # The operator's own: its stub LLM on loopback may be named (doce.endpoints).
            is_staff=True,
        )
        try:
            with (
                tempfile.TemporaryDirectory() as data_dir,
                StubLLM(reply="Done.", commands=bench_preview.commands(rounds)) as stub,
                bench_stream.running_project(
                    owner=user, stub=stub, data_dir=Path(data_dir) / "project"
                ) as project,
                bench_preview.serve_preview() as preview_port,
                bench_preview.framing(preview_port),
                bench_stream.serve_asgi() as url,
            ):
                measured = bench_preview.measure(
                    project, doce_url=url, preview_port=preview_port, user=user, rounds=rounds
                )
        finally:
            user.delete()
        figures = bench_preview.figures(measured)
        if as_json:
            self.stdout.write(json.dumps({**figures, "setup": {"rounds": rounds}}, indent=2))
            return
        self.stdout.write(f"live preview, {rounds} edit(s) by the agent, Chromium:")
        labels = {
            "reload": "file written -> the iframe starts its reload",
            "shown": "file written -> the new page loaded in the iframe",
        }
        for name, label in labels.items():
            value = figures[name]
            self.stdout.write(
                f"  {label:<52} median {value['median_ms']:6.1f} ms   "
                f"p95 {value['p95_ms']:6.1f} ms   max {value['max_ms']:6.1f} ms   "
                f"(n={value['n']})"
            )
