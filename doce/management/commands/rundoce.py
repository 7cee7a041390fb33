"""Run the web server, the site preview server, a Celery worker (with beat) and the sign-in
worker together; one Ctrl-C stops them all, and then the projects' OpenCode servers
(``--keep-servers`` leaves them running)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from doce.processes import stop_gracefully

STOP_GRACE_SECONDS = 10
WEB_STOP_GRACE_SECONDS = 3  # open event streams never end by themselves
DEFAULT_QUEUE = "celery"  # Celery's default queue: everything but the sign-ins
DEFAULT_WORKER_CONCURRENCY = 4  # worker processes for project work (DOCE_WORKER_CONCURRENCY)
_ALL_INTERFACES = {"0.0.0.0", "::", ""}  # noqa: S104 (only recognised, to print a usable URL)


def _reachable(host: str) -> str:
    return "127.0.0.1" if host in _ALL_INTERFACES else host


def preview_origin_mismatch(origin: str, preview_port: int) -> str:
    """A warning when DOCE_PREVIEW_ORIGIN names this machine on a port other than the one
    the preview runs on (every preview link would miss it), else "". Another host or
    the scheme's default port is a reverse proxy's business (docs/deploy.md)."""
    parts = urlsplit(origin.replace("{token}", "token"))
    host, port = parts.hostname or "", parts.port  # the settings checked it is an origin
    local = host in ("localhost", "127.0.0.1") or host.endswith(".localhost")
    if not local or port is None or port == preview_port:
        return ""
    return (
        f"DOCE_PREVIEW_ORIGIN={origin} names port {port}, but the site preview runs on port "
        f"{preview_port}: every preview link would miss it. Set the port in "
        f"DOCE_PREVIEW_ORIGIN to {preview_port}, or DOCE_PREVIEW_PORT={port}."
    )


class Command(BaseCommand):
    help = "Start doce: web server and Celery worker + beat, stopped together by Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("DOCE_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=settings.DOCE_PORT)
        parser.add_argument(
            "--preview-port",
            type=int,
            default=None,
            help="Where the site preview is served (DOCE_PREVIEW_PORT; default: --port + 1).",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=int(os.environ.get("DOCE_WORKER_CONCURRENCY", DEFAULT_WORKER_CONCURRENCY)),
            help="Celery worker processes for project work (sign-ins have their own worker).",
        )
        parser.add_argument(
            "--keep-servers",
            action="store_true",
            help="Leave the projects' OpenCode servers running when doce stops (a restart "
            "then finds them running); by default they are stopped too.",
        )

    def handle(self, *args, host, port, preview_port, concurrency, keep_servers, **options):
        if preview_port is None:
            preview_port = (
                settings.DOCE_PREVIEW_PORT if "DOCE_PREVIEW_PORT" in os.environ else port + 1
            )
        if preview_port == port:
            raise CommandError("The site preview needs a port of its own, not doce's.")
        for what, number in (("doce", port), ("the site preview", preview_port)):
            if _port_in_use(host, number):
                raise CommandError(
                    f"{host}:{number} ({what}) is already in use. Stop what runs there or pick "
                    "other ports with DOCE_PORT=8002 (and DOCE_PREVIEW_PORT=8003)."
                )
        mismatch = preview_origin_mismatch(settings.DOCE_PREVIEW_ORIGIN, preview_port)
        if mismatch:
            self.stderr.write(self.style.WARNING(mismatch))
        python = sys.executable
        # The workers learn the web port from it: no endpoint may name it (doce.endpoints).
        # The web server links the preview on the port it really runs on.
        os.environ["DOCE_PORT"] = str(port)
        os.environ["DOCE_PREVIEW_PORT"] = str(preview_port)
        commands = {
            # ASGI (uvicorn), as in production: the live transcript holds a stream open
            # per page. Static files come through WhiteNoise (from the finders in DEBUG).
            # Open streams are cut after a short grace when stopping.
            # doce's own pages take no WebSocket (only the preview does, for hot reload).
            "web": _uvicorn("doce.asgi:application", host=host, port=port, extra=("--ws", "none")),
            "preview": preview_command(host=host, port=preview_port),
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "doce",
                "worker",
                "--beat",
                "--loglevel",
                "INFO",
                "--queues",
                DEFAULT_QUEUE,
                "--concurrency",
                str(concurrency),
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
            # OAuth sign-ins wait for the user's approval: threads of their own, one per
            # sign-in allowed at once, so they never hold a process that projects need.
            "signin": [
                python,
                "-m",
                "celery",
                "-A",
                "doce",
                "worker",
                "--loglevel",
                "INFO",
                "--queues",
                settings.DOCE_OAUTH_QUEUE,
                "--pool",
                "threads",
                "--concurrency",
                str(settings.DOCE_OAUTH_MAX_FLOWS),
                "--hostname",
                f"{settings.DOCE_OAUTH_QUEUE}@%h",
            ],
        }
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            for name, command in commands.items():
                # Own session: a Ctrl-C reaches only this supervisor, which stops the
                # children in order (and their own children with them).
                children[name] = subprocess.Popen(command, start_new_session=True)
            announced = False
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"doce: the {name} process exited ({child.returncode}).")
                        stopping = True
                if not announced and _port_in_use(host, port):
                    announced = True
                    url = f"http://{_reachable(host)}:{port}/"
                    self.stdout.write(self.style.SUCCESS(f"\n  doce is running: open {url}\n"))
                    preview = (
                        settings.DOCE_PREVIEW_ORIGIN or f"http://{_reachable(host)}:{preview_port}"
                    )
                    self.stdout.write(f"  Site previews are served on {preview}/\n")
                    self.stdout.write("  Press Ctrl-C to stop the web server and the workers.\n")
                time.sleep(0.2)
        finally:
            # The main processes shut down their own children (Celery's pool) cleanly;
            # only what is left after the grace period is killed, group by group.
            stop_gracefully(children.values(), grace=STOP_GRACE_SECONDS)
            if not keep_servers:
                # By name: the projects app owns its servers (doce sits below it).
                call_command("stop_servers", stdout=self.stdout, stderr=self.stderr)
        failed = [name for name, child in children.items() if child.returncode not in (0, -15, -2)]
        self.stdout.write("doce stopped.")
        if failed:
            sys.exit(1)


def _uvicorn(app: str, *, host: str, port: int, extra: tuple[str, ...] = ()) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(settings.BASE_DIR),
        "--host",
        host,
        "--port",
        str(port),
        "--lifespan",
        "off",
        "--timeout-graceful-shutdown",
        str(WEB_STOP_GRACE_SECONDS),
        *extra,
    ]


def preview_command(*, host: str, port: int) -> list[str]:
    """The site preview's server (projects.preview_server): the agent's site on an origin
    of its own; no access log, as every request path carries its capability."""
    return _uvicorn(
        "projects.preview_asgi:application",
        host=host,
        port=port,
        # WebSocket too: a dev server's hot reload (projects.preview_proxy).
        extra=("--no-access-log", "--no-server-header", "--ws", "websockets-sansio"),
    )


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((_reachable(host), port)) == 0
