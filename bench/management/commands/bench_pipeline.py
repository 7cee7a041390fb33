"""Benchmark: what a user waits for, doce against the same work done by hand.

Everything runs in one go, on the configured database and broker, with throwaway users
(N projects at once are N users' projects, as the per-user server bound expects), a stub
LLM (bench.stub_llm) and a Celery worker of its own, started as `make run` starts
its worker (same concurrency, with beat) but with the provider catalog refresh held off,
so that no catalog server competes with the measurement. Then everything it made is
deleted and its servers stopped.

Figures, each as median and p95 over the samples:
- doce: submit (``project_create``, the web request's work) until the stub LLM receives
  the agent's request for that project's prompt: what the user waits for;
- raw: the same work by hand on the same binary, sandbox setting and stub
  (``bench.raw``);
- doce/raw ratios; doce and raw runs alternate (doce first, then raw first);
- doce − raw side by side: each round's doce and raw runs are neighbours in time, so
  their difference cancels the machine's drift (which, on a small machine, is larger
  than doce's own cost); its median with a 95 % confidence interval (from 6 rounds;
  fewer give their range);
- the part after OpenCode accepted the prompt, on each side: OpenCode's own way to the
  LLM, which doce does not run but can slow down;
- for 1 project and for N projects submitted at once;
- cold (no warm pool: DOCE_POOL_SIZE=0 in its worker) and, with ``--pool N``, warm: the
  worker keeps a pool of N servers, every measurement starts with the pool full and
  ready, against the raw floor of servers pre-started and warmed the same way (the
  project's opencode.json, ``PUT /auth``, dispose, session, prompt); ``--idle S``
  leaves every warm server of both sides idle S seconds first, as a pooled server
  waits for its project (an idle server may be slower to its first prompt);
- resident memory of each server's process tree (sandbox included) after its first
  prompt was answered;
- where doce's time goes: for each step of the start-up chain, the median time after
  submit at which it started and finished (its job row's timestamps), the rest being the
  broker's hand-offs and, after the last step, OpenCode's own way to the LLM;
- a key edit on a running project until the next prompt reaches the LLM with the new
  key, against a raw ``PUT /auth`` + dispose + prompt on a raw server.

With ``--pool`` the stub is opened to every sandbox (DOCE_SANDBOX_ALLOW), as an
operator's shared model server would be: a pooled server only serves endpoints that
every server may reach (docs/warm-pool.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings

from bench.management.commands.bench_opencode import _rss_mb
from bench.raw import (
    RawServer,
    RawSide,
    answered,
    arrival,
    new_key,
    paired,
    ratios,
    summary,
    wait_until,
)
from bench.stub_llm import StubLLM
from doce.management.commands.rundoce import DEFAULT_QUEUE, DEFAULT_WORKER_CONCURRENCY
from doce.opencode import binary
from doce.opencode.runtimes.local import LocalRuntime
from doce.processes import stop_gracefully
from doce.tasks import ping
from projects import services as project_services
from projects.jobs import START_PIPELINE
from projects.models import PooledServer, Project
from projects.pool import pool_stop_all
from providers.services import connection_create, connection_update
from queue_jobs.models import Job

# Its worker stops as `make run`'s does (doce.processes), with time for a running task.
WORKER_STOP_GRACE_SECONDS = 30
# How often the doce side reads a measured project's row to notice a failure.
FAILURE_CHECK_SECONDS = 0.5


class Command(BaseCommand):
    help = (
        "Measure what a user waits for (submit until the LLM gets the prompt; a key edit "
        "until the next prompt reaches the LLM), doce against the same work by hand, "
        "cold and with a warm pool (--pool N)."
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
        parser.add_argument(
            "--pool",
            type=int,
            default=0,
            help="also measure with a warm pool of this many servers (sizes above it are "
            "measured cold only); 0: cold only",
        )
        parser.add_argument(
            "--no-cold", action="store_true", help="with --pool: skip the cold measurements"
        )
        parser.add_argument(
            "--idle",
            type=float,
            default=0.0,
            help="with --pool: seconds every warm server sits idle, once ready, before a "
            "measurement (both sides; an idle server may be slower to its first prompt)",
        )
        parser.add_argument("--timeout", type=float, default=300.0)
        parser.add_argument("--json", action="store_true", help="print the figures as JSON")

    def handle(
        self,
        *args,
        sizes,
        rounds,
        key_edits,
        concurrency,
        pool,
        no_cold,
        idle,
        timeout,
        json,
        **options,
    ):  # noqa: A002
        try:
            sizes = [int(size) for size in sizes.split(",") if size.strip()]
        except ValueError:
            raise CommandError("--sizes takes numbers separated by commas, e.g. 1,10") from None
        if not sizes or min(sizes) < 1 or rounds < 1 or key_edits < 0 or concurrency < 1:
            raise CommandError("--sizes, --rounds and --concurrency must be at least 1.")
        if pool < 0 or (no_cold and not pool):
            raise CommandError("--pool takes 0 or more; --no-cold needs --pool.")
        if idle < 0 or (idle and not pool):
            raise CommandError("--idle takes 0 or more seconds, and needs --pool.")
        if binary.find() is None:
            raise CommandError("The OpenCode binary is missing: run `make setup`.")
        self.timeout, self.concurrency, self.idle = timeout, concurrency, idle
        figures: dict = {
            "broker": "embedded (filesystem)"
            if settings.DOCE_EMBEDDED_BROKER
            else settings.CELERY_BROKER_URL.split(":")[0],
            "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
            "sandbox": settings.DOCE_SANDBOX,
            "worker_concurrency": concurrency,
            "rounds": rounds,
            "pool": pool,
            "idle_s": idle,
        }
        self.worker = None
        with StubLLM(reply="ok") as stub, tempfile.TemporaryDirectory() as folder:
            self.stub, self.folder = stub, Path(folder)
            self.raw = RawSide(LocalRuntime(), self.folder, stub, timeout)
            self.users: list = []  # one per project of a batch: N users at once
            self.connections: list = []
            self.kept_project: Project | None = None
            self.kept_raw: RawServer | None = None
            try:
                if not no_cold:
                    self._start_worker(pool_size=0)
                    for size in sizes:
                        figures[f"start_{size}"] = self._compare(size, rounds, warm=False)
                    if key_edits:
                        figures["key_edit"] = self._key_edits(key_edits)
                    self._drop_kept()
                if pool:
                    # The stub is open to every sandbox, pooled servers and raw ones alike.
                    allow = [*settings.DOCE_SANDBOX_ALLOW, f"127.0.0.1:{stub.port}"]
                    with override_settings(DOCE_SANDBOX_ALLOW=allow):
                        self._start_worker(pool_size=pool, DOCE_SANDBOX_ALLOW=",".join(allow))
                        for size in [size for size in sizes if size <= pool]:
                            figures[f"warm_{size}"] = self._compare(size, rounds, warm=True)
            finally:
                self._clean_up()
        if json:
            self.stdout.write(_dumps(figures))
        else:
            self._print(figures)

    def _drop_kept(self) -> None:
        """The cold side's running project and raw server go before the warm side."""
        if self.kept_project is not None:
            project_services.project_destroy(project=self.kept_project)
        if self.kept_raw is not None:
            self.raw.remove(self.kept_raw)
        self.kept_project = self.kept_raw = None

    def _clean_up(self) -> None:
        # The worker first (and the pool with it): nothing refills the pool or starts a
        # server while the rest goes, and an interrupt (Ctrl-C) during the clean-up
        # does not leave it running.
        self._stop_worker()
        for project in Project.objects.filter(owner__in=self.users):
            with contextlib.suppress(Exception):
                project_services.project_destroy(project=project)
        for server in list(self.raw.servers):
            with contextlib.suppress(Exception):
                self.raw.remove(server)
        for user in self.users:
            user.delete()

    # --- the two sides ----------------------------------------------------------------
    def _compare(self, size: int, rounds: int, *, warm: bool) -> dict:
        doce, raw, doce_mb, raw_mb = [], [], [], []
        doce_after, raw_after = [], []  # OpenCode accepted the prompt -> at the LLM
        doce_rounds, raw_rounds = [], []  # each round's median, for the paired difference
        self.steps: dict[str, list[tuple[float, float]]] = {}
        self.raw.healthy_s = []
        for index in range(rounds):
            order = ("doce", "raw") if index % 2 == 0 else ("raw", "doce")
            for side in order:
                if side == "doce":
                    if warm:
                        self._pool_full()
                        time.sleep(self.idle)  # every pooled server idle that long, at least
                    times, after, memory = self._doce_batch(size, index, keep=not warm)
                    doce += times
                    doce_after += after
                    doce_mb += memory
                    doce_rounds.append(statistics.median(times))
                else:
                    if warm:
                        self._pool_full()  # its refills do not compete with the raw side
                    times, after, memory = self._raw_batch(size, index, warm=warm)
                    raw += times
                    raw_after += after
                    raw_mb += memory
                    raw_rounds.append(statistics.median(times))
        return {
            "doce_s": summary(doce),
            "raw_s": summary(raw),
            "doce_rss_mb": summary(doce_mb),
            "raw_rss_mb": summary(raw_mb),
            **ratios(doce, raw),
            "doce_minus_raw": paired(doce_rounds, raw_rounds),
            "doce_after_prompt_s": summary(doce_after),
            "raw_after_prompt_s": summary(raw_after),
            "doce_steps_ms": {
                step: [round(statistics.median(times) * 1000) for times in zip(*spans, strict=True)]
                for step, spans in self.steps.items()
            },
            "raw_healthy_ms": round(statistics.median(self.raw.healthy_s) * 1000)
            if self.raw.healthy_s
            else None,
        }

    def _pool_full(self) -> None:
        """Wait until the worker's pool holds its size, every server ready."""
        wait_until(
            lambda: (
                PooledServer.objects.filter(state=PooledServer.State.READY).count()
                >= self.pool_size
                and not PooledServer.objects.exclude(state=PooledServer.State.READY).exists()
            ),
            timeout=self.timeout,
            what=f"a warm pool of {self.pool_size} ready servers",
        )

    def _doce_batch(
        self, size: int, round_: int, *, keep: bool
    ) -> tuple[list[float], list[float], list[float]]:
        """``size`` projects submitted at once, as the web requests would, one after the
        other; each counted from its own submit until the LLM has its prompt. Also the
        part after the prompt step's end (its job row's finish, a few ms after OpenCode
        accepted the prompt: that part is a little short), and memory."""
        submitted: dict[int, tuple[float, str]] = {}
        submitted_at: dict[int, float] = {}  # wall clock, as the job rows have it
        projects = []
        for index in range(size):
            marker = f"doce-{round_}-{index}-{secrets.token_hex(4)}"
            started, started_at = time.monotonic(), time.time()
            project = project_services.project_create(
                owner=self._user(index),
                prompt=f"Build site {marker}",
                model=f"stub/{self.stub.model}",
            )
            submitted[project.pk] = (started, marker)
            submitted_at[project.pk] = started_at
            projects.append(project)
        times, after = [], []
        for project in projects:
            started, marker = submitted[project.pk]
            failed = self._failure_check(project)
            request = wait_until(
                lambda m=marker, f=failed: arrival(self.stub, m) or f(),
                timeout=self.timeout,
                what=f"project {project.pk}'s prompt at the LLM",
            )
            times.append(request.at - started)
            prompted = self._step_spans(project, submitted_at[project.pk])
            after.append(request.at - started - prompted)
        memory = []
        for project in projects:
            project.refresh_from_db()
            wait_until(lambda p=project: self._answered_doce(p), timeout=60, what="a first reply")
            memory.append(_rss_mb(project.runtime_state["pid"]))
        destroyed = []
        for project in projects:
            if keep and self.kept_project is None:
                self.kept_project = project  # it serves the key edits
            else:
                project_services.project_destroy(project=project)
                destroyed.append(project.pk)
        # The raw side removes its servers before it returns: so does this side, or a
        # server still stopping (and its folder being deleted) would slow the next run.
        wait_until(
            lambda: not Project.objects.filter(pk__in=destroyed).exists(),
            timeout=self.timeout,
            what="the measured projects' deletion",
        )
        return times, after, memory

    def _step_spans(self, project: Project, submitted_at: float) -> float:
        """When each step of the start-up chain started and finished, after submit;
        returns when the last one finished."""
        last = 0.0
        for job in Job.objects.filter(subject=project, type__in=START_PIPELINE):
            if job.started_at and job.finished_at:
                span = (
                    job.started_at.timestamp() - submitted_at,
                    job.finished_at.timestamp() - submitted_at,
                )
                self.steps.setdefault(job.type, []).append(span)
                last = max(last, span[1])
        return last

    @staticmethod
    def _failure_check(project: Project):
        """A check that raises once the project failed, reading its row at most every
        FAILURE_CHECK_SECONDS: a read every poll (100 a second, a database round trip
        each) would take CPU from the servers measured, which the raw side does not."""
        next_read = [0.0]

        def failed() -> None:
            if time.monotonic() < next_read[0]:
                return None
            next_read[0] = time.monotonic() + FAILURE_CHECK_SECONDS
            project.refresh_from_db(fields=["status", "error_message"])
            if project.status == Project.Status.ERROR:
                raise CommandError(f"project {project.pk} failed: {project.error_message}")
            return None

        return failed

    @staticmethod
    def _answered_doce(project: Project) -> bool:
        with project_services.project_client(project) as client:
            return answered(client.messages(project.bootstrap_session_id))

    def _raw_batch(
        self, size: int, round_: int, *, warm: bool
    ) -> tuple[list[float], list[float], list[float]]:
        """The same work by hand, ``size`` servers at once (a thread each). Warm: the
        servers are started and warmed first, then the clock starts."""
        name = f"raw-{'warm' if warm else 'cold'}-{round_}"
        prestarted: list[RawServer] = []
        if warm:
            prestarted = self._threads(
                size, lambda i: self.raw.prestart(f"{name}-{i}-{secrets.token_hex(4)}")
            )
            time.sleep(self.idle)

        def one(index: int):
            marker = f"{name}-{index}-{secrets.token_hex(4)}"
            if warm:
                return (*self.raw.warm(prestarted[index], marker), prestarted[index])
            return self.raw.cold(marker)

        results = self._threads(size, one)
        times, after, memory = [], [], []
        for elapsed, after_prompt, server in results:
            times.append(elapsed)
            after.append(after_prompt)
            wait_until(server.answered, timeout=60, what="a raw first reply")
            memory.append(_rss_mb(server.state.pid))
        for *_, server in results:
            if not warm and self.kept_raw is None:
                self.kept_raw = server  # it serves the key edits
            else:
                self.raw.remove(server)
        return times, after, memory

    @staticmethod
    def _threads(size: int, work) -> list:
        results: list = [None] * size

        def run(index: int) -> None:
            try:
                results[index] = work(index)
            except BaseException as exc:  # reported below, in this thread
                results[index] = exc

        threads = [threading.Thread(target=run, args=(i,)) for i in range(size)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise CommandError(f"a raw server failed: {result}") from result
        return results

    # --- key edit to the next prompt --------------------------------------------------
    def _key_edits(self, samples: int) -> dict:
        project, raw = self.kept_project, self.kept_raw
        if project is None or raw is None:
            raise CommandError("no running project and raw server left for the key edits")
        doce, floor, wrong_key = [], [], 0
        for index in range(samples):
            for side in ("doce", "raw") if index % 2 == 0 else ("raw", "doce"):
                key, marker = new_key(), f"key-{side}-{index}-{secrets.token_hex(4)}"
                started = time.monotonic()
                if side == "doce":
                    connection_update(connection=self.connections[0], api_key=key)
                    project.refresh_from_db()
                    project_services.message_send(project=project, text=f"Change {marker}")
                    done = lambda p=project: self._answered_doce(p)  # noqa: E731
                else:
                    self.raw.key_edit(raw, key, marker)
                    done = raw.answered
                request = wait_until(
                    lambda m=marker: arrival(self.stub, m),
                    timeout=60,
                    what=f"the prompt after key edit {index} ({side})",
                )
                (doce if side == "doce" else floor).append(request.at - started)
                if request.authorization != f"Bearer {key}":
                    wrong_key += 1
                wait_until(done, timeout=60, what="the reply after a key edit")
        result = {
            "doce_s": summary(doce),
            "raw_s": summary(floor),
            "wrong_key": wrong_key,
            "doce_minus_raw": paired(doce, floor),
        }
        if doce and floor:
            result["ratio_median"] = ratios(doce, floor)["ratio_median"]
        return result

    # --- plumbing -----------------------------------------------------------------------
    def _user(self, index: int):
        """The batch's ``index``-th user (made on first use) with a stub connection: N
        projects at once are N users' projects, each within its own per-user bound."""
        while len(self.users) <= index:
            user = get_user_model().objects.create_user(
                username=f"bench-{secrets.token_hex(4)}",
                password=secrets.token_urlsafe(16),
                # The operator's own: its stub LLM on loopback may be named (doce.endpoints).
                is_staff=True,
            )
            self.users.append(user)
            self.connections.append(
                connection_create(
                    user=user,
                    provider_id="stub",
                    name="Stub",
                    base_url=self.stub.base_url,
                    models=[self.stub.model],
                    api_key=new_key(),
                )
            )
        return self.users[index]

    def _start_worker(self, *, pool_size: int, **env: str) -> None:
        """The worker as `make run` starts it (default queue, beat, same concurrency),
        with the catalog refresh held off and a warm pool of ``pool_size`` (it fills it
        when it starts). A worker started before is stopped first, with its pool."""
        self._stop_worker()
        self.pool_size = pool_size
        log_path = self.folder / f"worker-pool-{pool_size}.log"
        env = {
            **os.environ,
            "DOCE_PROVIDER_CATALOG_REFRESH_ON_START": "false",
            "DOCE_PROVIDER_CATALOG_CHECK_SECONDS": str(7 * 24 * 3600),
            "DOCE_POOL_SIZE": str(pool_size),
            **env,
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
                    str(self.folder / "beat-schedule"),
                    "--loglevel",
                    "WARNING",
                    "--queues",
                    DEFAULT_QUEUE,
                    "--concurrency",
                    str(self.concurrency),
                    "--hostname",
                    f"bench-{os.getpid()}-{pool_size}@%h",
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
                    self.worker = worker
                    return
            except Exception:  # noqa: S112 (the worker is still starting)
                continue
        stop_gracefully([worker], grace=WORKER_STOP_GRACE_SECONDS)
        raise CommandError(f"the benchmark worker did not start: {log_path.read_text()[-2000:]}")

    def _stop_worker(self) -> None:
        if self.worker is not None:
            stop_gracefully([self.worker], grace=WORKER_STOP_GRACE_SECONDS)
            self.worker = None
        pool_stop_all()  # after the worker, which would refill it

    def _print(self, figures: dict) -> None:
        self.stdout.write(
            f"broker: {figures['broker']}; database: {figures['database']}; sandbox: "
            f"{figures['sandbox']}; worker processes: {figures['worker_concurrency']}; "
            f"rounds: {figures['rounds']}; warm pool: {figures['pool'] or 'none'}"
            + (f", idle {figures['idle_s']:g} s first" if figures["idle_s"] else "")
        )
        for key, value in figures.items():
            if key.startswith(("start_", "warm_")):
                kind, size = key.split("_", 1)
                if kind == "start":
                    self.stdout.write(
                        f"\n{size} project(s) at once, cold: submit -> prompt at the LLM"
                    )
                    raw = "raw (same work by hand)"
                else:
                    self.stdout.write(
                        f"\n{size} project(s) at once, warm pool of {figures['pool']}: "
                        "submit -> prompt at the LLM"
                    )
                    raw = "raw (pre-started, by hand)"
                self._row("doce", value["doce_s"], "s")
                self._row(raw, value["raw_s"], "s")
                if "ratio_median" in value:
                    self.stdout.write(
                        f"  {'doce/raw':<30} median {value['ratio_median']:>7}   "
                        f"p95 {value['ratio_p95']:>7}"
                    )
                self._paired_row(value["doce_minus_raw"])
                self._row("doce: prompt accepted -> LLM", value["doce_after_prompt_s"], "s")
                self._row("raw: prompt accepted -> LLM", value["raw_after_prompt_s"], "s")
                self._row("doce server RSS after 1st prompt", value["doce_rss_mb"], "MB")
                self._row("raw server RSS after 1st prompt", value["raw_rss_mb"], "MB")
                spans = ", ".join(
                    f"{step.split('.')[-1]} {start}-{end}"
                    for step, (start, end) in value["doce_steps_ms"].items()
                )
                self.stdout.write(f"  doce steps, ms after submit (median start-end): {spans}")
                if value["raw_healthy_ms"] is not None:
                    self.stdout.write(
                        f"  raw: healthy {value['raw_healthy_ms']} ms after its spawn (median)"
                    )
        if "key_edit" in figures:
            value = figures["key_edit"]
            self.stdout.write("\nkey edit -> next prompt at the LLM")
            self._row("doce (save key, send prompt)", value["doce_s"], "s")
            self._row("raw (PUT /auth, dispose, prompt)", value["raw_s"], "s")
            if "ratio_median" in value:
                self.stdout.write(f"  {'doce/raw':<30} median {value['ratio_median']:>7}")
            self._paired_row(value["doce_minus_raw"])
            self.stdout.write(
                f"  prompts that reached the LLM with an old key: {value['wrong_key']}"
            )

    def _paired_row(self, value: dict) -> None:
        if value.get("n"):
            if "ci95_ms" in value:
                spread = "95% CI {:+} .. {:+} ms".format(*value["ci95_ms"])
            else:  # too few pairs for a 95 % interval
                spread = "range {:+} .. {:+} ms, too few pairs for a 95% CI".format(
                    *value["range_ms"]
                )
            self.stdout.write(
                f"  {'doce - raw, side by side':<30} median {value['median_ms']:>+7} ms  "
                f"{spread}   (n={value['n']} pairs)"
            )

    def _row(self, label: str, summary: dict, unit: str) -> None:
        if not summary.get("n"):
            self.stdout.write(f"  {label:<30} n/a")
            return
        self.stdout.write(
            f"  {label:<30} median {summary['median']:>7} {unit}   "
            f"p95 {summary['p95']:>7} {unit}   (n={summary['n']})"
        )


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))
