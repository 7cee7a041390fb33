"""A Docker daemon of the tests' own, and an OpenCode image for it made without any
registry: what the docker runtime's integration tests run against.

- The image's base is Debian bookworm made with ``debootstrap --variant=minbase`` from
  Debian's mirror (bash, python3 for the attack scripts, git, ripgrep, iproute2 and socat
  as in doce's image, a ``doce`` user with uid 1000), tarred once and cached in
  ``~/.cache/doce-tests`` (``DOCE_TEST_CACHE``) under a name keyed by its recipe; the
  pinned OpenCode binary is added as the tar is streamed into ``docker import``.
- The daemon is Debian's ``dockerd`` as root with its own data root, exec root (its
  containerd's state too), pid file and socket under a temporary folder. Its network
  leaves the host's firewall and forwarding alone: ``--iptables=false``,
  ``--ip-forward=false``, ``--ip-masq=false``, a bridge of its own (``docetest<n>``,
  removed at the end) whose address is ``host-gateway``, and compose networks from
  198.18.0.0/16 (a benchmarking range no real network uses). Published ports go
  through docker-proxy on 127.0.0.1, as they would with iptables. The host forwards
  nothing (``ip_forward`` 0), so nothing a container sends leaves this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from doce.opencode import binary as opencode_binary
from tests.integration.conftest import wait_for

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "git", "ripgrep", "ca-certificates", "iproute2", "socat")
RECIPE = 3  # bump when base_tarball() changes what it puts in the tar
IMAGE_BIN = "/app/node_modules/opencode-linux-x64/bin/opencode"
IMAGE_HOME = "/home/doce"
HOME_FOLDERS = tuple(
    f"home/doce/{folder}" for folder in ("", ".config", ".cache", ".local/share", ".local/state")
)
IMAGE_USER = "1000:1000"
# A bridge and an address of this test process's own: two runs on one machine never meet.
_SLOT = os.getpid() % 200 + 1
BRIDGE = f"docetest{_SLOT}"
GATEWAY = f"198.19.{_SLOT}.1"
ADDRESS_POOL = "198.18.0.0/16"
DEBOOTSTRAP_TIMEOUT = 900
START_TIMEOUT = 60


def cache_dir() -> Path:
    folder = Path(os.environ.get("DOCE_TEST_CACHE") or Path.home() / ".cache" / "doce-tests")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def base_tarball() -> Path:
    """The cached root filesystem tar; made (about a minute) when missing."""
    cache = cache_dir()
    path = cache / f"rootfs-{SUITE}-{_key(SUITE, MIRROR, PACKAGES, RECIPE)}.tar"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time
        if path.exists():
            return path
        with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as work:
            root = Path(work) / "root"
            subprocess.run(
                [
                    "debootstrap",
                    "--variant=minbase",
                    "--include=" + ",".join(PACKAGES),
                    SUITE,
                    str(root),
                    MIRROR,
                ],
                check=True,
                capture_output=True,
                timeout=DEBOOTSTRAP_TIMEOUT,
            )
            with open(root / "etc/passwd", "a") as handle:
                handle.write(f"doce:x:1000:1000::{IMAGE_HOME}:/bin/bash\n")
            with open(root / "etc/group", "a") as handle:
                handle.write("doce:x:1000:\n")
            # The home's XDG folders exist, the user's, as in doce's image: docker creates
            # the mount points of the provider files (~/.config/gcloud...) as root.
            for folder_name in (*HOME_FOLDERS, "workspace"):
                (root / folder_name).mkdir(mode=0o755, parents=True, exist_ok=True)
            for folder_name in (*HOME_FOLDERS, "workspace"):
                for entry in (root / folder_name, *(root / folder_name).parents):
                    if entry.is_relative_to(root / "home") and entry != root / "home":
                        os.chown(entry, 1000, 1000)
            os.chown(root / "workspace", 1000, 1000)
            for leftover in (root / "var/cache/apt/archives").glob("*.deb"):
                leftover.unlink()
            shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
            partial = Path(work) / "rootfs.tar"
            subprocess.run(
                [
                    "tar",
                    "--numeric-owner",
                    "--exclude=./dev/*",
                    "--exclude=./proc/*",
                    "--exclude=./sys/*",
                    "-C",
                    str(root),
                    "-cf",
                    str(partial),
                    ".",
                ],
                check=True,
                timeout=300,
            )
            os.replace(partial, path)
        for stale in cache.glob(f"rootfs-{SUITE}-*.tar"):  # an older recipe's
            if stale != path:
                stale.unlink()
    return path


def import_image(docker_env: dict[str, str]) -> str:
    """``docker import`` the base tar with the pinned OpenCode binary added; its tag."""
    binary = opencode_binary.find()
    if binary is None:
        raise RuntimeError("no OpenCode binary: run `make setup`")
    base = base_tarball()
    stat = Path(binary).stat()
    tag = f"doce-test-opencode:{_key(base.name, str(binary), stat.st_size, stat.st_mtime)}"
    changes = [
        f"USER {IMAGE_USER}",
        "WORKDIR /workspace",
        "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8",
    ]
    command = ["docker", "import", *(f"--change={change}" for change in changes), "-", tag]
    importer = subprocess.Popen(command, env=docker_env, stdin=subprocess.PIPE)
    assert importer.stdin is not None
    try:
        with (
            tarfile.open(base, "r:") as source,
            tarfile.open(fileobj=importer.stdin, mode="w|") as out,
        ):
            for member in source:
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
            parent = ""
            for part in Path(IMAGE_BIN).parent.parts[1:]:
                parent = f"{parent}/{part}" if parent else part
                folder = tarfile.TarInfo(parent)
                folder.type, folder.mode = tarfile.DIRTYPE, 0o755
                out.addfile(folder)
            with open(binary, "rb") as handle:
                info = out.gettarinfo(fileobj=handle, arcname=IMAGE_BIN.lstrip("/"))
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o755
                out.addfile(info, handle)
    finally:
        importer.stdin.close()
    if importer.wait(timeout=300) != 0:
        raise RuntimeError(f"`docker import` failed ({importer.returncode})")
    return tag


def firewall() -> dict[str, str]:
    """The host's packet filter and forwarding, to compare before and after."""

    def output(command: list[str]) -> str:
        if shutil.which(command[0]) is None:
            return f"{command[0]}: not installed"
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        lines = result.stdout.splitlines() + result.stderr.splitlines()
        return "\n".join(line for line in lines if not line.startswith("#"))

    return {
        "iptables": output(["iptables-save"]),
        "ip6tables": output(["ip6tables-save"]),
        "nft": output(["nft", "list", "ruleset"]),
        "ip_forward": Path("/proc/sys/net/ipv4/ip_forward").read_text().strip(),
        "links": output(["ip", "-o", "link", "show", "type", "bridge"]),
    }


@dataclass(frozen=True)
class Daemon:
    root: Path
    image: str

    @property
    def env(self) -> dict[str, str]:
        """What the docker CLI (and so doce's runtime) needs to use this daemon."""
        return {"DOCKER_HOST": f"unix://{self.root}/docker.sock", "DOCKER_CONFIG": str(self.root)}

    def docker(self, *args: str, timeout: float = 120, check: bool = True):
        return subprocess.run(
            ["docker", *args],
            env={"PATH": os.environ["PATH"], **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


def _ip(*args: str, check: bool = True) -> None:
    subprocess.run(["ip", *args], check=check, capture_output=True, timeout=30)


def _unmount_under(root: Path) -> None:
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(root) + "/")
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True, timeout=30)


@contextlib.contextmanager
def running_daemon() -> Iterator[Daemon]:
    """Start the daemon, import the image, yield; then remove every container, stop the
    daemon and remove everything it made (mounts, the bridge, the folder)."""
    for tool in ("dockerd", "containerd", "runc", "docker-proxy", "debootstrap"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is missing: `make docker` installs it")
    root = Path(tempfile.mkdtemp(prefix="doce-dockerd-"))
    (root / "daemon.json").write_text("{}\n")  # not the machine's /etc/docker/daemon.json
    _ip("link", "del", BRIDGE, check=False)  # a crashed run's
    _ip("link", "add", BRIDGE, "type", "bridge")
    process = None
    try:
        _ip("addr", "add", f"{GATEWAY}/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        with open(root / "dockerd.log", "wb") as log:
            process = subprocess.Popen(
                [
                    "dockerd",
                    f"--config-file={root / 'daemon.json'}",
                    f"--data-root={root / 'data'}",
                    f"--exec-root={root / 'exec'}",
                    f"--pidfile={root / 'dockerd.pid'}",
                    f"--host=unix://{root / 'docker.sock'}",
                    "--iptables=false",
                    "--ip-forward=false",
                    "--ip-masq=false",
                    f"--bridge={BRIDGE}",
                    f"--host-gateway-ip={GATEWAY}",
                    f"--default-address-pool=base={ADDRESS_POOL},size=24",
                    "--exec-opt=native.cgroupdriver=cgroupfs",
                    "--log-level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        daemon = Daemon(root=root, image="")

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError("dockerd exited:\n" + log_tail())
            return daemon.docker("version", check=False, timeout=30).returncode == 0

        def log_tail() -> str:
            return (root / "dockerd.log").read_text()[-3000:]

        wait_for(answers, timeout=START_TIMEOUT, what="dockerd", explain=log_tail)
        compose = daemon.docker("compose", "version", check=False)
        if compose.returncode != 0:
            raise RuntimeError("`docker compose` is missing: `make docker` installs it")
        yield Daemon(root=root, image=import_image(daemon.env))
    finally:
        if process is not None:
            daemon = Daemon(root=root, image="")
            listing = daemon.docker("ps", "-aq", check=False, timeout=30).stdout.split()
            if listing:
                daemon.docker("rm", "-f", "-v", *listing, check=False)
            daemon.docker("network", "prune", "-f", check=False)
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)
        _unmount_under(root)
        _ip("link", "del", BRIDGE, check=False)
        shutil.rmtree(root, ignore_errors=True)
