"""Benchmark: how long a piece of a reply takes from the LLM to a page's event stream.

A stub LLM streams replies in pieces to a real OpenCode server; an SSE client of doce's
``/projects/<id>/stream/`` (the ASGI application under uvicorn, in this process) notes
when each delta arrives. The figure is the delay from the stub writing a piece to the
client receiving it (median, p95), which includes OpenCode's own handling of the piece.
Runs against the configured database with a throwaway user, and removes it afterwards.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from bench import stream as bench_stream
from bench.stub_llm import StubLLM


class Command(BaseCommand):
    help = "Measure the live transcript's delay: stub LLM piece -> SSE client of doce."

    def add_arguments(self, parser):
        parser.add_argument("--rounds", type=int, default=5, help="replies to stream")
        parser.add_argument("--pieces", type=int, default=20, help="pieces per reply")
        parser.add_argument(
            "--interval", type=float, default=0.05, help="seconds between two pieces"
        )
        parser.add_argument("--viewers", type=int, default=1, help="SSE clients at once")
        parser.add_argument(
            "--compare-recorder",
            action="store_true",
            help="alternate rounds with and without the recorder following the project "
            "(projects.recorder): the page figure of each, side by side",
        )
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print the figures as JSON"
        )

    def handle(
        self, *args, rounds, pieces, interval, viewers, as_json, compare_recorder, **options
    ):
        if rounds < 1 or pieces < 1 or viewers < 1 or interval < 0:
            raise CommandError("--rounds, --pieces and --viewers must be >= 1, --interval >= 0")
        words = [f"w{i} " for i in range(pieces)]
        user = get_user_model().objects.create_user(
            username=f"bench-{secrets.token_hex(4)}",
            password=secrets.token_urlsafe(16),
            # The operator's own: its stub LLM on loopback may be named (doce.endpoints).
            is_staff=True,
        )
        measured: dict[str, list[float]] = {}
        try:
            with (
                tempfile.TemporaryDirectory() as data_dir,
                StubLLM(chunks=words, chunk_interval=interval) as stub,
                bench_stream.running_project(
                    owner=user, stub=stub, data_dir=Path(data_dir) / "project"
                ) as project,
                bench_stream.serve_asgi() as url,
                bench_stream.Recording() as recording,
            ):
                raw = bench_stream.RawEvents(project).__enter__()
                clients = [
                    bench_stream.SSEClient(
                        f"{url}/projects/{project.pk}/stream/", bench_stream.session_cookie(user)
                    ).__enter__()
                    for _ in range(viewers)
                ]
                try:
                    raw.connected.wait(30)
                    measured = self._measure(
                        project,
                        stub,
                        raw,
                        clients,
                        rounds,
                        "".join(words),
                        recording=recording if compare_recorder else None,
                    )
                finally:
                    for client in clients:
                        client.__exit__(None, None, None)
                    raw.__exit__(None, None, None)
        finally:
            user.delete()
        figures = {
            name: bench_stream.summary(values) if values else None
            for name, values in measured.items()
        }
        figures["setup"] = {
            "rounds": rounds,
            "pieces": pieces,
            "interval_s": interval,
            "viewers": viewers,
        }
        if as_json:
            self.stdout.write(json.dumps(figures, indent=2))
            return
        self.stdout.write(
            f"live transcript, {rounds} replies x {pieces} pieces, {viewers} viewer(s):"
        )
        labels = {
            "opencode": "stub LLM piece -> OpenCode's /event (OpenCode's own)",
            "page": "stub LLM piece -> SSE client of doce",
            "doce": "OpenCode's /event -> SSE client of doce (target <= 200 ms)",
        }
        if compare_recorder:
            labels = {
                "page_recorder_off": "stub LLM piece -> SSE client, recorder off",
                "page_recorder_on": "stub LLM piece -> SSE client, recorder on",
            }
        for name, label in labels.items():
            value = figures[name]
            if value is None:
                self.stdout.write(f"  {label:<60} n/a")
                continue
            self.stdout.write(
                f"  {label:<60} median {value['median_ms']:6.1f} ms   "
                f"p95 {value['p95_ms']:6.1f} ms   max {value['max_ms']:6.1f} ms   "
                f"(n={value['n']})"
            )

    def _measure(
        self, project, stub, raw, clients, rounds: int, reply: str, *, recording=None
    ) -> dict:
        # Each viewer gets a reload when it joins; the viewers there when the one
        # upstream subscription connects get a second one (a viewer joining a feed that
        # is already connected gets only its own).
        bench_stream.wait_until(
            lambda: (
                any(c.error for c in clients)
                or (
                    all(c.received("reload") for c in clients)
                    and any(len(c.received("reload")) >= 2 for c in clients)
                )
            ),
            timeout=120,
            what="the stream",
        )
        for client in clients:
            if client.error is not None:
                raise CommandError(f"the event stream failed: {client.error!r}")
        measured: dict[str, list[float]] = {"opencode": [], "page": [], "doce": []}
        if recording is not None:
            measured.update(page_recorder_off=[], page_recorder_on=[])
        for round_ in range(rounds):
            if recording is not None:  # alternate: neighbours in time, same conditions
                recording.follow(project.pk if round_ % 2 else None)
            stub.clear()
            seen = [len(c.received("delta")) for c in clients]
            bench_stream.prompt(project, f"round {round_}")
            for client, before in zip(clients, seen, strict=True):

                def whole(client=client, before=before):
                    deltas = client.received("delta")[before:]
                    text = "".join(json_text(d) for d in deltas)
                    return deltas if text == reply else None

                deltas = bench_stream.wait_until(whole, timeout=120, what="the reply's deltas")
                for written, sent, received in bench_stream.timeline(stub, raw, deltas):
                    if written is not None:
                        measured["page"].append(received - written)
                        if recording is not None and client is clients[0]:
                            side = "on" if round_ % 2 else "off"
                            measured[f"page_recorder_{side}"].append(received - written)
                    if sent is not None:
                        measured["doce"].append(received - sent)
                    if written is not None and sent is not None and client is clients[0]:
                        measured["opencode"].append(sent - written)
            bench_stream.wait_until(
                lambda: all(
                    any(e.data == "idle" for e in c.received("status")[-1:]) for c in clients
                ),
                timeout=60,
                what="the session to be idle",
            )
        return measured


def json_text(delta) -> str:
    return json.loads(delta.data)["text"]
