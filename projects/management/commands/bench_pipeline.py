"""Benchmark: N projects created at once, from submit to initial prompt delivered.

Runs against the configured database and broker with a throwaway user, a stub LLM and a
Celery worker subprocess of its own, then deletes everything it made. Figures:
- submit -> initial prompt delivered (wall clock, per project);
- time inside the steps, split into OpenCode's start-up (runtime.up + wait_healthy) and
  the other steps (credential injection, session, prompt: mostly OpenCode's HTTP time);
- orchestration overhead: everything else (broker hops between the five steps, claims,
  database writes) = total - time inside steps;
- credential injection step latency; resident memory per running project's server.
"""

from __future__ import annotations

import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from doce.stub_llm import StubLLM
from doce.tasks import ping
from projects import services as project_services
from projects.jobs import JobType
from projects.models import Project
from providers.services import connection_create
from queue_jobs.models import Job, JobState


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.0f} ms"


def _stats(label: str, values: list[float]) -> str:
    if not values:
        return f"  {label:<44} n/a"
    return (
        f"  {label:<44} median {_ms(statistics.median(values))}   "
        f"max {_ms(max(values))}   min {_ms(min(values))}"
    )


class Command(BaseCommand):
    help = "Measure N concurrent project pipelines (real worker, real OpenCode, stub LLM)."

    def add_arguments(self, parser):
        parser.add_argument("--projects", type=int, default=10)
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="worker processes (default: one per project)",
        )
        parser.add_argument("--timeout", type=float, default=300.0)

    def handle(self, *args, projects: int, concurrency: int | None, timeout: float, **opts):
        concurrency = concurrency or projects
        user = get_user_model().objects.create_user(
            username=f"bench-{secrets.token_hex(4)}", password=secrets.token_urlsafe(16)
        )
        worker = None
        created: list[Project] = []
        with StubLLM(reply="ok") as stub, tempfile.TemporaryDirectory() as logs:
            try:
                connection_create(
                    user=user,
                    provider_id="stub",
                    name="Stub",
                    base_url=stub.base_url,
                    models=["stub-model"],
                    api_key="sk-bench-" + secrets.token_hex(16),
                )
                worker = self._start_worker(Path(logs) / "worker.log", concurrency)
                submitted = {}
                for index in range(projects):
                    start = time.monotonic()
                    project = project_services.project_create(
                        owner=user, prompt=f"bench site {index}", model="stub/stub-model"
                    )
                    submitted[project.pk] = (start, time.monotonic() - start)
                    created.append(project)
                self._wait(created, timeout)
                self._report(created, submitted, stub)
            finally:
                for project in Project.objects.filter(owner=user):
                    project_services.project_destroy(project=project)
                if worker is not None:
                    os.killpg(worker.pid, signal.SIGTERM)
                    try:
                        worker.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        os.killpg(worker.pid, signal.SIGKILL)
                        worker.wait()
                user.delete()

    def _start_worker(self, log_path: Path, concurrency: int) -> subprocess.Popen:
        log = open(log_path, "w")  # noqa: SIM115 (the child writes to it)
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "doce",
                "worker",
                "--loglevel",
                "WARNING",
                "--concurrency",
                str(concurrency),
                "--hostname",
                f"bench-{os.getpid()}@%h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,
        )
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if ping.apply_async(expires=10).get(timeout=5, interval=0.05) == "pong":
                    return worker
            except Exception:  # noqa: S112 (the worker is still starting)
                continue
        raise CommandError(f"the benchmark worker did not start: {log_path.read_text()[-2000:]}")

    def _wait(self, projects: list[Project], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = {p.pk for p in projects}
        while pending and time.monotonic() < deadline:
            done = Job.objects.filter(
                subject_id__in=pending,
                type=JobType.SEND_INITIAL_PROMPT,
                state__in=[JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED],
            ).values_list("subject_id", flat=True)
            failed = Project.objects.filter(pk__in=pending, status=Project.Status.ERROR)
            if failed.exists():
                raise CommandError(f"a pipeline failed: {failed.first().error_message}")
            pending -= set(done)
            time.sleep(0.05)
        if pending:
            raise CommandError(f"{len(pending)} pipeline(s) did not finish in {timeout:.0f} s")

    def _report(self, projects, submitted, stub) -> None:
        totals, startup, other_steps, overhead, inject, gaps, memory = [], [], [], [], [], [], []
        for project in projects:
            jobs = {j.type: j for j in Job.objects.filter(subject=project)}
            first, last = jobs[JobType.RUNTIME_UP], jobs[JobType.SEND_INITIAL_PROMPT]
            total = (last.finished_at - project.created_at).total_seconds()
            inside = {t: j.duration_seconds or 0.0 for t, j in jobs.items()}
            boot = inside[JobType.RUNTIME_UP] + inside[JobType.WAIT_HEALTHY]
            totals.append(total)
            startup.append(boot)
            other_steps.append(sum(inside.values()) - boot)
            overhead.append(total - sum(inside.values()))
            inject.append(inside[JobType.SET_CREDENTIALS])
            gaps.append((first.started_at - project.created_at).total_seconds())
            project.refresh_from_db()
            pid = project.runtime_state.get("pid")
            if pid and psutil.pid_exists(pid):
                tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
                memory.append(sum(p.memory_info().rss for p in tree) / 2**20)
        broker = (
            "embedded (filesystem)"
            if settings.DOCE_EMBEDDED_BROKER
            else settings.CELERY_BROKER_URL.split(":")[0]
        )
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        self.stdout.write(
            f"\n{len(projects)} projects created at once; broker: {broker}; database: {database}"
        )
        self.stdout.write(
            _stats("submit (project_create, web request work)", [s[1] for s in submitted.values()])
        )
        self.stdout.write(_stats("submit -> initial prompt delivered", totals))
        self.stdout.write(_stats("  OpenCode start-up (spawn + healthy)", startup))
        self.stdout.write(_stats("  other steps (inject, session, prompt)", other_steps))
        self.stdout.write(_stats("  orchestration overhead (hops, claims)", overhead))
        self.stdout.write(_stats("  of which: submit -> first step starts", gaps))
        self.stdout.write(_stats("credential injection step (PUT /auth)", inject))
        if memory:
            label = "resident memory per running project"
            self.stdout.write(
                f"  {label:<44} median {statistics.median(memory):6.0f} MB   "
                f"max {max(memory):6.0f} MB"
            )
        self.stdout.write(f"  stub LLM completions received: {len(stub.completions())}")
