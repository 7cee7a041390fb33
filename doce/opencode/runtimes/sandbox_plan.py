"""What the sandbox of one server needs, from doce's settings: the tools, whether the
machine can run them at all, and the plan that ``sandbox.py`` carries out.

Which host-side services a server may reach: the custom endpoints of its user (the
spec's custom providers), the providers the operator's ``DOCE_OPENCODE_CONFIG``
declares, its npm mirror (``DOCE_OPENCODE_NPM_REGISTRY``) and ``DOCE_SANDBOX_ALLOW``.
A loopback one (Ollama on 127.0.0.1:11434) is reached as that same address and port
inside the sandbox, and only that port; another host of the machine's own networks is
let past the blocks by address.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from doce.opencode.runtimes import sandbox
from doce.opencode.runtimes.base import RuntimeFailure, ServerSpec
from doce.opencode.runtimes.config import load_operator_config

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install bubblewrap and passt (Debian/Ubuntu: apt-get install bubblewrap passt "
    "iproute2 util-linux) and allow unprivileged user namespaces, or set DOCE_SANDBOX=off "
    "to run OpenCode servers unsandboxed (only for a single trusted user)"
)
OFF_WARNING = (
    "DOCE_SANDBOX=off: OpenCode servers run unsandboxed, so each project's agent can read "
    "every other project's credentials and doce's own keys. Only for a single trusted user."
)
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}
# How long a finding of the machine check holds (tools can be installed meanwhile).
_CHECK_TTL = 60.0


def enabled() -> bool:
    return settings.DOCE_SANDBOX == "on"


def tools() -> dict[str, str | None]:
    return {
        "bwrap": shutil.which(settings.DOCE_BWRAP_BIN),
        "pasta": shutil.which(settings.DOCE_PASTA_BIN),
        "nsenter": shutil.which("nsenter"),
        "ip": shutil.which("ip"),
    }


def problem() -> str:
    """Why servers cannot be sandboxed on this machine ("" when they can)."""
    found = tools()
    return _problem(tuple(sorted(found.items())), int(time.monotonic() // _CHECK_TTL))


@functools.lru_cache(maxsize=4)
def _problem(found: tuple[tuple[str, str | None], ...], _epoch: int) -> str:
    missing = [name for name, path in found if path is None]
    if missing:
        return f"{', '.join(missing)} not found"
    bwrap = dict(found)["bwrap"]
    try:  # the one thing only trying shows: can this user make the namespaces?
        result = subprocess.run(
            [
                bwrap,
                "--unshare-all",
                "--die-with-parent",
                "--ro-bind",
                "/usr",
                "/usr",
                "--symlink",
                "usr/lib",
                "/lib",
                "--symlink",
                "usr/lib64",
                "/lib64",
                "--symlink",
                "usr/bin",
                "/bin",
                "--cap-drop",
                "ALL",
                "/usr/bin/true",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"bwrap cannot run ({exc})"
    if result.returncode != 0:
        detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
        return f"bwrap cannot create namespaces here ({detail[:200]})"
    return ""


def require() -> dict[str, str]:
    """The tools, or RuntimeFailure (not retryable) with one line saying what to do."""
    reason = problem()
    if reason:
        raise RuntimeFailure(
            f"the sandbox cannot be set up: {reason}; {INSTALL_HINT}", retryable=False
        )
    return {name: path for name, path in tools().items() if path}


def command(spec: ServerSpec, *, binary: Path, port: int, serve: list[str]) -> list[str]:
    """The command that runs ``serve`` inside the sandbox (writes its plan)."""
    layout = spec.layout
    etc_dir = Path(settings.DOCE_DATA_DIR) / "sandbox" / "etc"
    sandbox.write_etc(etc_dir)
    operator = load_operator_config()
    loopback_ports, hosts = reachable(_endpoints(spec, operator))
    plan = sandbox.Plan(
        workspace=str(layout.workspace.resolve()),
        home=str(layout.home.resolve()),
        port=port,
        etc_dir=str(etc_dir),
        read_only=sorted({str(binary.resolve()), *plugin_files(operator)}),
        allow_loopback_ports=loopback_ports,
        allow_hosts=hosts,
        tools=require(),
    )
    plan_file = layout.data_dir / "sandbox.json"
    plan_file.write_text(plan.to_json())
    plan_file.chmod(0o600)
    return [sys.executable, "-I", sandbox.__file__, str(plan_file), "--", *serve]


def reach(spec: ServerSpec) -> tuple[set[int], set[str]]:
    """What a sandbox started for ``spec`` may reach on the host side: loopback ports and
    other host addresses (fixed when it starts; see ``command``)."""
    ports, hosts = reachable(_endpoints(spec, load_operator_config()))
    return set(ports), set(hosts)


def _endpoints(spec: ServerSpec, operator: dict[str, Any]) -> list[str]:
    urls = [provider.base_url for provider in spec.custom_providers]
    for provider in (operator.get("provider") or {}).values():
        options = provider.get("options") if isinstance(provider, dict) else None
        if isinstance(options, dict) and isinstance(options.get("baseURL"), str):
            urls.append(options["baseURL"])
    if settings.DOCE_OPENCODE_NPM_REGISTRY:  # the operator's npm mirror
        urls.append(settings.DOCE_OPENCODE_NPM_REGISTRY)
    return [*urls, *(f"//{entry}" for entry in settings.DOCE_SANDBOX_ALLOW)]


def reachable(urls: Iterable[str]) -> tuple[list[int], list[str]]:
    """Loopback ports and other host addresses the sandbox may reach, from URLs (or
    ``//host:port``)."""
    ports: set[int] = set()
    hosts: set[str] = set()
    for url in urls:
        parts = urlsplit(url if "//" in url else f"//{url}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            continue
        if not host:
            continue
        port = port or (443 if parts.scheme == "https" else 80)
        if host in _LOOPBACK_NAMES or _is_loopback(host):
            ports.add(port)
        else:
            hosts.update(_addresses(host))
    return sorted(ports), sorted(hosts)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _addresses(host: str) -> set[str]:
    """IPv4 addresses of a host on the machine's own networks (the only ones the
    blocks could stop); public ones need nothing."""
    try:
        infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        return set()
    found = set()
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if address.is_private or address.is_link_local:
            found.add(str(address))
    return found


def plugin_files(operator: dict[str, Any]) -> list[str]:
    """Files the operator's config loads as plugins (``file://`` entries)."""
    files = []
    for entry in operator.get("plugin") or []:
        if isinstance(entry, str) and entry.startswith("file://"):
            path = Path(urlsplit(entry).path)
            if path.is_file():
                files.append(str(path.resolve()))
    return files
