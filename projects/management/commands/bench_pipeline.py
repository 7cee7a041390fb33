"""Benchmark: what a user waits for, doce against the same work done by hand.

Everything runs in one go, on the configured database and broker, with throwaway users
(N projects at once are N users' projects, as the per-user server bound expects), a stub
LLM (doce.stub_llm) and a Celery worker of its own, started as `make run` starts
its worker (same concurrency, with beat) but with the provider catalog refresh held off,
so that no catalog server competes with the measurement. Then everything it made is
deleted and its servers stopped.

Figures, each as median and p95 over the samples:
- doce: submit (``project_create``, the web request's work) until the stub LLM receives
  the agent's request for that project's prompt: what the user waits for;
- raw: the same work by hand on the same binary, sandbox setting and stub: start the
  server (the local runtime's sandboxed spawn), poll health, ``PUT /auth``, ``POST
  /session``, ``prompt_async``, until the stub receives the request;
- doce/raw ratios; doce and raw runs alternate (doce first, then raw first);
- for 1 project and for N projects submitted at once;
- resident memory of each server's process tree (sandbox included) after its first
  prompt was answered;
- a key edit on a running project until the next prompt reaches the LLM with the new
  key, against a raw ``PUT /auth`` + dispose + prompt on a raw server.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from doce.management.commands.rundoce import DEFAULT_QUEUE, DEFAULT_WORKER_CONCURRENCY
from doce.opencode import binary
from doce.opencode.runtimes import CustomProvider, RuntimeState, ServerSpec
from doce.opencode.runtimes.local import LocalRuntime
from doce.stub_llm import StubLLM
from doce.tasks import ping
from projects import services as project_services
from projects.management.commands.bench_opencode import _rss_mb
from projects.models import Project
from providers.services import connection_create, connection_update

POLL = 0.01


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(0.95 * len(ordered)) - 1, 0)]


def _summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": round(statistics.median(values), 3),
        "p95": round(_p95(values), 3),
    }


def _wait(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise CommandError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


def _arrival(stub: StubLLM, marker: str):
    """The stub's record of the agent's request (the one offering tools: not the title
    request) whose conversation holds ``marker``, or None."""
    for request in stub.completions():
        body = request.body if isinstance(request.body, dict) else {}
        if body.get("tools") and marker in json.dumps(body.get("messages", [])):
            return request
    return None


@dataclass
class RawServer:
    """A server driven by hand: plain HTTP, none of doce's code but the spawn."""

    state: RuntimeState
    http: httpx.Client
    session: str = ""

    def params(self) -> dict:
        return {"directory": self.state.directory} if self.state.directory else {}

    def call(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = self.http.request(method, path, params=self.params(), **kwargs)
        response.raise_for_status()
        return response


class Command(BaseCommand):
    help = (
        "Measure what a user waits for (submit until the LLM gets the prompt; a key edit "
        "until the next prompt reaches the LLM), doce against the same work by hand."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--sizes",
            default="1,10",
            help="comma-separated numbers of projects submitted at once (default 1,10)",
        )
        parser.add_argument("--rounds", type=int, default=3, help="runs of each size and side")
        parser.add_argument("--key-edits", type=int, default=5, help="key edit samples")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=int(os.environ.get("DOCE_WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY)),
            help="worker processes (default: what `make run` uses, DOCE_WORKER_CONCURRENCY "
            f"or {DEFAULT_WORKER_CONCURRENCY})",
        )
        parser.add_argument("--timeout", type=float, default=300.0)
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")

    def handle(self, *args, sizes, rounds, key_edits, concurrency, timeout, json, **options):  # noqa: A002
        try:
            sizes = [int(size) for size in sizes.split(",") if size.strip()]
        except ValueError:
            raise CommandError("--sizes takes numbers separated by commas, e.g. 1,10") from None
        if not sizes or min(sizes) < 1 or rounds < 1 or key_edits < 0 or concurrency < 1:
            raise CommandError("--sizes, --rounds and --concurrency must be at least 1.")
        if binary.find() is None:
            raise CommandError("The OpenCode binary is missing: run `make setup`.")
        self.timeout = timeout
        self.runtime = LocalRuntime()
        worker = None
        raw_servers: list[RawServer] = []
        figures: dict = {
            "broker": "embedded (filesystem)"
            if settings.DOCE_EMBEDDED_BROKER
            else settings.CELERY_BROKER_URL.split(":")[0],
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "sandbox": settings.DOCE_SANDBOX,
            "worker_concurrency": concurrency,
            "rounds": rounds,
        }
        with StubLLM(reply="ok") as stub, tempfile.TemporaryDirectory() as folder:
            self.stub, self.folder = stub, Path(folder)
            self.users: list = []  # one per project of a batch: N users at once
            self.connections: list = []
            self.raw_servers = raw_servers
            self.kept_project: Project | None = None
            self.kept_raw: RawServer | None = None
            try:
                worker = self._start_worker(self.folder, concurrency)
                # A warm pool (servers started ahead of demand) would be filled here,
                # before the clock starts, and reported beside the cold figures.
                for size in sizes:
                    figures[f"start_{size}"] = self._compare(size, rounds)
                if key_edits:
                    figures["key_edit"] = self._key_edits(key_edits)
            finally:
                for project in Project.objects.filter(owner__in=self.users):
                    with contextlib.suppress(Exception):
                        project_services.project_destroy(project=project)
                for server in raw_servers:
                    server.http.close()
                    with contextlib.suppress(Exception):
                        self.runtime.remove(server.state)
                if worker is not None:
                    _stop(worker)
                for user in self.users:
                    user.delete()
        if json:
            self.stdout.write(_dumps(figures))
        else:
            self._print(figures)

    # --- the two sides ----------------------------------------------------------------
    def _compare(self, size: int, rounds: int) -> dict:
        doce, raw, doce_mb, raw_mb = [], [], [], []
        for index in range(rounds):
            order = ("doce", "raw") if index % 2 == 0 else ("raw", "doce")
            for side in order:
                if side == "doce":
                    times, memory = self._doce_batch(size, index)
                    doce += times
                    doce_mb += memory
                else:
                    times, memory = self._raw_batch(size, index)
                    raw += times
                    raw_mb += memory
        result = {
            "doce_s": _summary(doce),
            "raw_s": _summary(raw),
            "doce_rss_mb": _summary(doce_mb),
            "raw_rss_mb": _summary(raw_mb),
        }
        if doce and raw:
            result["ratio_median"] = round(statistics.median(doce) / statistics.median(raw), 2)
            result["ratio_p95"] = round(_p95(doce) / _p95(raw), 2)
        return result

    def _doce_batch(self, size: int, round_: int) -> tuple[list[float], list[float]]:
        """``size`` projects submitted at once, as the web requests would, one after the
        other; each counted from its own submit until the LLM has its prompt."""
        submitted: dict[int, tuple[float, str]] = {}
        projects = []
        for index in range(size):
            marker = f"doce-{round_}-{index}-{secrets.token_hex(4)}"
            started = time.monotonic()
            project = project_services.project_create(
                owner=self._user(index),
                prompt=f"Build site {marker}",
                model=f"stub/{self.stub.model}",
            )
            submitted[project.pk] = (started, marker)
            projects.append(project)
        times = []
        for project in projects:
            started, marker = submitted[project.pk]
            request = _wait(
                lambda m=marker, p=project: _arrival(self.stub, m) or self._failed(p),
                timeout=self.timeout,
                what=f"project {project.pk}'s prompt at the LLM",
            )
            times.append(request.at - started)
        memory = []
        for project in projects:
            project.refresh_from_db()
            _wait(lambda p=project: self._answered_doce(p), timeout=60, what="the first reply")
            memory.append(_rss_mb(project.runtime_state["pid"]))
        for project in projects:
            if self.kept_project is None:
                self.kept_project = project  # it serves the key edits
            else:
                project_services.project_destroy(project=project)
        return times, memory

    @staticmethod
    def _failed(project: Project):
        project.refresh_from_db()
        if project.status == Project.Status.ERROR:
            raise CommandError(f"project {project.pk} failed: {project.error_message}")
        return None

    @staticmethod
    def _answered_doce(project: Project) -> bool:
        with project_services.project_client(project) as client:
            return _answered(client.messages(project.bootstrap_session_id))

    def _raw_batch(self, size: int, round_: int) -> tuple[list[float], list[float]]:
        """The same work by hand, ``size`` servers at once (a thread each)."""
        results: list[tuple[float, RawServer] | BaseException] = []

        def one(index: int) -> None:
            try:
                results.append(self._raw_one(f"raw-{round_}-{index}-{secrets.token_hex(4)}"))
            except BaseException as exc:  # reported below, in this thread
                results.append(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise CommandError(f"a raw server failed: {result}") from result
        times, memory = [], []
        for elapsed, server in results:
            times.append(elapsed)
            _wait(lambda s=server: self._answered_raw(s), timeout=60, what="a raw first reply")
            memory.append(_rss_mb(server.state.pid))
        for _, server in results:
            if self.kept_raw is None:
                self.kept_raw = server  # it serves the key edits
            else:
                self.raw_servers.remove(server)
                server.http.close()
                self.runtime.remove(server.state)
        return times, memory

    def _raw_one(self, marker: str) -> tuple[float, RawServer]:
        password = secrets.token_urlsafe(24)
        spec = ServerSpec(
            name=marker,
            data_dir=self.folder / marker,
            model=f"stub/{self.stub.model}",
            password=password,
            custom_providers=(
                CustomProvider("stub", "Stub", self.stub.base_url, [self.stub.model]),
            ),
        )
        started = time.monotonic()
        state = self.runtime.start(spec)
        server = RawServer(
            state,
            httpx.Client(
                base_url=f"http://127.0.0.1:{state.port}",
                auth=("opencode", password),
                timeout=30,
                trust_env=False,
            ),
        )
        self.raw_servers.append(server)
        deadline = started + self.timeout
        while True:
            try:
                if server.http.get("/global/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"raw server {marker} never became healthy")
            time.sleep(POLL)
        server.call("PUT", "/auth/stub", json={"type": "api", "key": self._key()})
        server.session = server.call("POST", "/session", json={}).json()["id"]
        self._raw_prompt(server, f"Build site {marker}")
        request = _wait(
            lambda: _arrival(self.stub, marker), timeout=self.timeout, what=f"{marker} at the LLM"
        )
        return request.at - started, server

    def _raw_prompt(self, server: RawServer, text: str) -> None:
        body = {
            "parts": [{"type": "text", "text": text}],
            "model": {"providerID": "stub", "modelID": self.stub.model},
        }
        server.call("POST", f"/session/{server.session}/prompt_async", json=body)

    @staticmethod
    def _answered_raw(server: RawServer) -> bool:
        return _answered(server.call("GET", f"/session/{server.session}/message").json())

    # --- key edit to the next prompt --------------------------------------------------
    def _key_edits(self, samples: int) -> dict:
        project, raw = self.kept_project, self.kept_raw
        if project is None or raw is None:
            raise CommandError("no running project and raw server left for the key edits")
        doce, floor, wrong_key = [], [], 0
        for index in range(samples):
            for side in ("doce", "raw") if index % 2 == 0 else ("raw", "doce"):
                key, marker = self._key(), f"key-{side}-{index}-{secrets.token_hex(4)}"
                if side == "doce":
                    started = time.monotonic()
                    connection_update(connection=self.connections[0], api_key=key)
                    project.refresh_from_db()
                    project_services.message_send(project=project, text=f"Change {marker}")
                    answered = lambda p=project: self._answered_doce(p)  # noqa: E731
                else:
                    started = time.monotonic()
                    raw.call("PUT", "/auth/stub", json={"type": "api", "key": key})
                    raw.call("POST", "/instance/dispose")
                    self._raw_prompt(raw, f"Change {marker}")
                    answered = lambda s=raw: self._answered_raw(s)  # noqa: E731
                request = _wait(
                    lambda m=marker: _arrival(self.stub, m),
                    timeout=60,
                    what=f"the prompt after key edit {index} ({side})",
                )
                (doce if side == "doce" else floor).append(request.at - started)
                if request.authorization != f"Bearer {key}":
                    wrong_key += 1
                _wait(answered, timeout=60, what="the reply after a key edit")
        result = {"doce_s": _summary(doce), "raw_s": _summary(floor), "wrong_key": wrong_key}
        if doce and floor:
            result["ratio_median"] = round(statistics.median(doce) / statistics.median(floor), 2)
        return result

    # --- plumbing -----------------------------------------------------------------------
    def _user(self, index: int):
        """The batch's ``index``-th user (made on first use) with a stub connection: N
        projects at once are N users' projects, each within its own per-user bound."""
        while len(self.users) <= index:
            user = get_user_model().objects.create_user(
                username=f"bench-{secrets.token_hex(4)}", password=secrets.token_urlsafe(16)
            )
            self.users.append(user)
            self.connections.append(
                connection_create(
                    user=user,
                    provider_id="stub",
                    name="Stub",
                    base_url=self.stub.base_url,
                    models=[self.stub.model],
                    api_key=self._key(),
                )
            )
        return self.users[index]

    def _key(self) -> str:
        return "sk-bench-" + secrets.token_hex(16)

    def _start_worker(self, folder: Path, concurrency: int) -> subprocess.Popen:
        """The worker as `make run` starts it (default queue, beat, same concurrency),
        with the catalog refresh held off for the duration."""
        log_path = folder / "worker.log"
        env = {
            **os.environ,
            "DOCE_PROVIDER_CATALOG_REFRESH_ON_START": "false",
            "DOCE_PROVIDER_CATALOG_CHECK_SECONDS": str(7 * 24 * 3600),
        }
        with open(log_path, "w") as log:
            worker = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "doce",
                    "worker",
                    "--beat",
                    "--schedule",
                    str(folder / "beat-schedule"),
                    "--loglevel",
                    "WARNING",
                    "--queues",
                    DEFAULT_QUEUE,
                    "--concurrency",
                    str(concurrency),
                    "--hostname",
                    f"bench-{os.getpid()}@%h",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=settings.BASE_DIR,
                env=env,
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                break
            try:
                if ping.apply_async(expires=10).get(timeout=5, interval=0.05) == "pong":
                    return worker
            except Exception:  # noqa: S112 (the worker is still starting)
                continue
        _stop(worker)
        raise CommandError(f"the benchmark worker did not start: {log_path.read_text()[-2000:]}")

    def _print(self, figures: dict) -> None:
        self.stdout.write(
            f"broker: {figures['broker']}; database: {figures['database']}; sandbox: "
            f"{figures['sandbox']}; worker processes: {figures['worker_concurrency']}; "
            f"rounds: {figures['rounds']}"
        )
        for key, value in figures.items():
            if key.startswith("start_"):
                size = key.split("_", 1)[1]
                self.stdout.write(f"\n{size} project(s) at once: submit -> prompt at the LLM")
                self._row("doce", value["doce_s"], "s")
                self._row("raw (same work by hand)", value["raw_s"], "s")
                if "ratio_median" in value:
                    self.stdout.write(
                        f"  {'doce/raw':<30} median {value['ratio_median']:>7}   "
                        f"p95 {value['ratio_p95']:>7}"
                    )
                self._row("doce server RSS after 1st prompt", value["doce_rss_mb"], "MB")
                self._row("raw server RSS after 1st prompt", value["raw_rss_mb"], "MB")
        if "key_edit" in figures:
            value = figures["key_edit"]
            self.stdout.write("\nkey edit -> next prompt at the LLM")
            self._row("doce (save key, send prompt)", value["doce_s"], "s")
            self._row("raw (PUT /auth, dispose, prompt)", value["raw_s"], "s")
            if "ratio_median" in value:
                self.stdout.write(f"  {'doce/raw':<30} median {value['ratio_median']:>7}")
            self.stdout.write(
                f"  prompts that reached the LLM with an old key: {value['wrong_key']}"
            )

    def _row(self, label: str, summary: dict, unit: str) -> None:
        if not summary.get("n"):
            self.stdout.write(f"  {label:<30} n/a")
            return
        self.stdout.write(
            f"  {label:<30} median {summary['median']:>7} {unit}   "
            f"p95 {summary['p95']:>7} {unit}   (n={summary['n']})"
        )


def _answered(messages: list[dict]) -> bool:
    """The last message is a finished reply."""
    if not messages:
        return False
    info = messages[-1].get("info", {})
    return info.get("role") == "assistant" and bool(info.get("time", {}).get("completed"))


def _stop(worker: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(worker.pid, 15)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, 9)
        worker.wait()


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
