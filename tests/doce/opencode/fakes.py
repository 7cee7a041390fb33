"""Stand-ins for the outside programs a runtime drives: a fake ``opencode`` binary, a
fake ``docker`` CLI that records its arguments, and an npm registry that stalls."""

from __future__ import annotations

import json
import os
import stat
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def _executable(path: Path, body: str) -> Path:
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


class FakeOpenCode:
    """tests/fixtures/fake_opencode.py as an executable, with its behaviour file."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = _executable(folder / "opencode", (FIXTURES / "fake_opencode.py").read_text())
        self.behave()

    def behave(self, **behaviour: object) -> None:
        (self.path.parent / "behaviour.json").write_text(json.dumps(behaviour))

    @staticmethod
    def record(home: Path) -> dict:
        """How the fake was started: argv, cwd, env, umask."""
        return json.loads((home / "fake.json").read_text())


_FAKE_DOCKER = r"""
import json, os, sys
from pathlib import Path
log = Path(os.environ.get("FAKE_DOCKER_LOG") or Path(__file__).with_name("docker.log"))
state = log.with_name("docker.running")
passed = {k: v for k, v in os.environ.items() if k in ("OPENCODE_SERVER_PASSWORD", "HOME")}
with log.open("a") as handle:
    record = {"argv": sys.argv[1:], "env": passed, "env_names": sorted(os.environ)}
    handle.write(json.dumps(record) + "\n")
args = sys.argv[1:]
if args[:1] == ["cp"]:  # `docker cp CONTAINER:PATH -`: a tar of the file on stdout
    served = Path(__file__).with_name("cp-source")
    if not served.exists():
        print("Error response from daemon: Could not find the file", file=sys.stderr)
        sys.exit(1)
    import io, tarfile
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(served, arcname=args[1].rpartition("/")[2], recursive=False)
    sys.stdout.buffer.write(buffer.getvalue())
    sys.exit(0)
if args[:1] == ["inspect"]:
    if not state.exists():
        print("Error: No such object", file=sys.stderr)
        sys.exit(1)
    print(state.read_text())
elif args[:1] == ["compose"]:
    if "up" in args:
        state.write_text("true")
    elif "stop" in args:
        state.write_text("false")
    elif "down" in args:
        state.unlink(missing_ok=True)
    if os.environ.get("FAKE_DOCKER_FAIL") or Path(__file__).with_name("fail").exists():
        print("Error response from daemon: no such image", file=sys.stderr)
        sys.exit(1)
"""


class FakeDocker:
    """A ``docker`` executable that records each call (argv, the password it was handed,
    the names of the variables it saw) and keeps a running/stopped flag."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = _executable(folder / "docker", _FAKE_DOCKER)

    @property
    def calls(self) -> list[dict]:
        log = self.folder / "docker.log"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    def fail_next(self, fail: bool = True) -> None:
        flag = self.folder / "fail"
        flag.touch() if fail else flag.unlink(missing_ok=True)

    def crash_container(self) -> None:
        (self.folder / "docker.running").write_text("false")

    def serve_file(self, content: bytes | None = None, *, link_to: Path | None = None) -> None:
        """What ``docker cp`` finds in the container: a file, a link, or nothing."""
        source = self.folder / "cp-source"
        source.unlink(missing_ok=True)
        if link_to is not None:
            source.symlink_to(link_to)
        elif content is not None:
            source.write_bytes(content)


class StallingNpmRegistry:
    """An npm registry that lists every package but never delivers a tarball.

    OpenCode's background ``npm install`` of ``@opencode-ai/plugin`` then stays in its
    reify step, where npm's rollback handler swallows SIGTERM: the condition under which
    OpenCode ignores a SIGTERM, reproduced offline. ``tarball_requested`` is set once npm
    has reached that step.
    """

    def __init__(self) -> None:
        self.tarball_requested = threading.Event()
        self._release = threading.Event()
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?")[0]
                if path.endswith(".tgz"):
                    registry.tarball_requested.set()
                    registry._release.wait(120)
                    return
                name = path.lstrip("/").replace("%2f", "/").replace("%2F", "/")
                base = f"http://127.0.0.1:{self.server.server_address[1]}"
                version = "1.18.33"
                tarball = f"{base}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
                body = json.dumps(
                    {
                        "name": name,
                        "dist-tags": {"latest": version},
                        "versions": {
                            version: {
                                "name": name,
                                "version": version,
                                "dist": {"tarball": tarball},
                            }
                        },
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> StallingNpmRegistry:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()


def processes_in(folder: Path) -> list[int]:
    """Pids of processes whose working directory is inside ``folder``: what a test
    checks to prove that nothing it started is left behind."""
    import psutil

    found = []
    root = str(folder.resolve())
    for process in psutil.process_iter(["pid", "cwd"]):
        cwd = process.info.get("cwd") or ""
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(process.info["pid"])
    return found
