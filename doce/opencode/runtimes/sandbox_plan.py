"""What the sandbox of one server needs, from doce's settings: the tools, whether the
machine can run them at all, and the plan that ``sandbox.py`` carries out.

Which host-side services a server may reach: the custom endpoints of its user (the
spec's custom providers), the providers the operator's ``DOCE_OPENCODE_CONFIG``
declares, its npm mirror (``DOCE_OPENCODE_NPM_REGISTRY``) and ``DOCE_SANDBOX_ALLOW``.
A loopback one (Ollama on 127.0.0.1:11434) is reached as that same address and port
inside the sandbox, and only that port; another host of the machine's own networks is
let past the blocks by address. ``doce.endpoints`` decides which may be opened at all:
a user's endpoint on this machine only if the user is staff or the operator listed it,
doce's own services never.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from doce import endpoints
from doce.opencode.runtimes import sandbox, sandbox_limits
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


def command(
    spec: ServerSpec, *, binary: Path, port: int, serve: list[str], preview_port: int | None = None
) -> list[str]:
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
        preview_port=preview_port,
        etc_dir=str(etc_dir),
        read_only=sorted({str(binary.resolve()), *plugin_files(operator)}),
        allow_loopback_ports=loopback_ports,
        allow_hosts=hosts,
        tools=require(),
        name=spec.name,
        bounds=bounds(layout),
    )
    plan_file = layout.data_dir / "sandbox.json"
    plan_file.write_text(plan.to_json())
    plan_file.chmod(0o600)
    return [sys.executable, "-I", sandbox.__file__, str(plan_file), "--", *serve]


def bounds(layout) -> dict | None:
    """The plan's bounds (``sandbox_limits``); DOCE_LIMITS=required refuses here when
    this machine cannot enforce them all."""
    sandbox_limits.require()
    return sandbox_limits.plan_bounds(layout).to_dict()


def reach(spec: ServerSpec) -> tuple[set[int], set[str]]:
    """What a sandbox started for ``spec`` may reach on the host side: loopback ports and
    other host addresses (fixed when it starts; see ``command``)."""
    ports, hosts = reachable(_endpoints(spec, load_operator_config()))
    return set(ports), set(hosts)


#: An endpoint the sandbox is asked to reach: its URL (or ``//host:port``), and whether
#: whoever named it may open this machine's services (staff, the operator's settings).
Endpoint = tuple[str, bool]


def _endpoints(spec: ServerSpec, operator: dict[str, Any]) -> list[Endpoint]:
    trusted = bool(getattr(spec, "trusted_endpoints", False))
    found = [(provider.base_url, trusted) for provider in spec.custom_providers]
    found += [(url, True) for url in getattr(spec, "trusted_urls", ())]
    for provider in (operator.get("provider") or {}).values():
        options = provider.get("options") if isinstance(provider, dict) else None
        if isinstance(options, dict) and isinstance(options.get("baseURL"), str):
            found.append((options["baseURL"], True))
    if settings.DOCE_OPENCODE_NPM_REGISTRY:  # the operator's npm mirror
        found.append((settings.DOCE_OPENCODE_NPM_REGISTRY, True))
    return [*found, *((f"//{entry}", True) for entry in settings.DOCE_SANDBOX_ALLOW)]


def reachable(urls: Iterable[Endpoint | str]) -> tuple[list[int], list[str]]:
    """Loopback ports and other host addresses the sandbox may reach, from endpoints (a
    bare URL counts as the operator's). Whatever ``doce.endpoints`` refuses opens
    nothing, whoever named it: a row written by a script or an old release included."""
    ports: set[int] = set()
    hosts: set[str] = set()
    for item in urls:
        url, trusted = (item, True) if isinstance(item, str) else item
        target = endpoints.split(url)
        if target is None:
            continue
        host, port = target
        for address in endpoints.addresses_of(host):
            problem = endpoints.address_problem(address, port, trusted=trusted, host=host)
            if problem:
                logger.warning("sandbox: not opened: %s", problem)
                continue
            ip = ipaddress.ip_address(address)
            if ip.is_loopback:
                ports.add(port)
            elif ip.version == 4 and endpoints.is_local(address):
                hosts.add(address)  # past the blocks; public ones need nothing
    return sorted(ports), sorted(hosts)


def plugin_files(operator: dict[str, Any]) -> list[str]:
    """Files the operator's config loads as plugins (``file://`` entries)."""
    files = []
    for entry in operator.get("plugin") or []:
        if isinstance(entry, str) and entry.startswith("file://"):
            path = Path(urlsplit(entry).path)
            if path.is_file():
                files.append(str(path.resolve()))
    return files
