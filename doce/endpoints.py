"""Which hosts an endpoint that someone typed may name: the one rule for custom
providers' base URLs, key checks and the sandboxes' reach (docs/sandbox.md, "What a user
types").

- **A blocked network never** (``DOCE_ENDPOINT_BLOCKED_NETWORKS``: link-local, cloud
  metadata, ``0.0.0.0`` and every form of it), whoever asks.
- **doce's own services never**, whoever asks and whatever is configured: its database,
  broker, result backend and cache (from their URLs), its web port (``DOCE_PORT``), the
  loopback ports its OpenCode servers listen on (``DOCE_SERVER_PORT_RANGE``) and a Docker
  daemon reached over TCP (``DOCKER_HOST``). A service on loopback (or on all
  interfaces) is closed on every address of the machine; one on another host (the
  compose stack's ``db``) closes that whole host, since a sandbox's routes cannot tell
  its ports apart.
- **This machine and its private networks** (loopback, private, link-local, shared and
  reserved ranges, the machine's own public addresses: anything not globally routable)
  only for a *trusted* caller (a staff user, the operator's own configuration) or for an
  entry of ``DOCE_ENDPOINT_ALLOW``.
- Anything else (a public host) is fine.

    problem = endpoint_problem("http://127.0.0.1:6379/v1", trusted=False)
    # "127.0.0.1:6379 is doce's broker: ..."   ("" when allowed)

``address_problem`` says the same of one resolved address, for callers that connect
themselves (the key check vets every address it is about to connect to).
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import psutil
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PORTS = {
    "http": 80,
    "https": 443,
    "postgres": 5432,
    "postgresql": 5432,
    "pgsql": 5432,
    "mysql": 3306,
    "redis": 6379,
    "rediss": 6379,
    "amqp": 5672,
    "amqps": 5671,
    "pyamqp": 5672,
    "tcp": 2375,
}
LOOPBACK_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        # What containers call the machine they run on (the docker runtime maps it).
        "host.docker.internal",
        "gateway.docker.internal",
        "host.containers.internal",
    }
)
# Resolved addresses of the machine and of doce's services hold this long.
_CACHE_SECONDS = 30.0

BLOCKED_MESSAGE = (
    "{where} is in a network this server does not connect to (link-local or cloud "
    "metadata addresses, DOCE_ENDPOINT_BLOCKED_NETWORKS): use your endpoint's own address."
)
SERVICE_MESSAGE = (
    "{where} is {what}: no endpoint may point there (doce never opens its own services "
    "to an agent)."
)
LOCAL_MESSAGE = (
    "{where} is on this machine or its private network: only administrators may use such "
    "an endpoint. Ask an administrator to add it to DOCE_ENDPOINT_ALLOW, or use the "
    "endpoint's public address."
)


@dataclass(frozen=True)
class Service:
    """One of doce's own services. ``machine``: it listens on this machine (loopback,
    all interfaces or one of its addresses), so it is closed on every address of the
    machine at ``ports``; otherwise it is another host, closed whole at ``addresses``."""

    what: str
    machine: bool
    ports: frozenset[int] | range = frozenset()
    addresses: frozenset[str] = frozenset()


def _ip(address: str) -> IPAddress | None:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0].strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def resolve(host: str) -> list[str]:
    """The addresses ``host`` resolves to (an IP literal: itself); [] when it does not.
    A name's answer is kept up to 30 s (pages list endpoints; a slow resolver must not
    slow every page). Whoever connects resolves again and vets what it connects to."""
    ip = _ip(host)
    if ip is not None:
        return [str(ip)]
    return list(_resolve_name(host.lower(), _epoch()))


@functools.lru_cache(maxsize=256)
def _resolve_name(host: str, _epoch: int) -> tuple[str, ...]:
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return ()
    found: dict[str, None] = {}
    for *_, sockaddr in infos:
        ip = _ip(str(sockaddr[0]))
        if ip is not None:
            found.setdefault(str(ip))
    return tuple(found)


def _epoch() -> int:
    return int(time.monotonic() // _CACHE_SECONDS)


@functools.lru_cache(maxsize=2)
def _machine_addresses(_epoch: int) -> frozenset[str]:
    found = set()
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family in (socket.AF_INET, socket.AF_INET6):
                ip = _ip(address.address)
                if ip is not None:
                    found.add(str(ip))
    return frozenset(found)


def machine_addresses() -> frozenset[str]:
    """Every address of this machine's interfaces."""
    return _machine_addresses(_epoch())


def is_local(address: str) -> bool:
    """On this machine or a network it is attached to: not globally routable
    (loopback, private, link-local, shared, reserved, unspecified), or one of the
    machine's own addresses."""
    ip = _ip(address)
    if ip is None:
        return True  # not an address: never taken for a public one
    return not ip.is_global or ip.is_multicast or str(ip) in machine_addresses()


def _on_machine(ip: IPAddress | None) -> bool:
    return ip is not None and (ip.is_loopback or ip.is_unspecified)


def _service_url(url: str, what: str) -> Service | None:
    if not url or "://" not in url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:  # a unix socket, a file, SQLite
        return None
    scheme = parts.scheme.split("+", 1)[0].lower()
    port = port or DEFAULT_PORTS.get(scheme)
    return _service(host, port, what)


def _service(host: str, port: int | None, what: str) -> Service | None:
    ports = frozenset({port}) if port else frozenset()
    if host.lower() in LOOPBACK_NAMES:
        return Service(what, machine=True, ports=ports)
    addresses = frozenset(resolve(host))
    if not addresses:
        return None
    if any(_on_machine(_ip(a)) or a in machine_addresses() for a in addresses):
        return Service(what, machine=True, ports=ports)
    return Service(what, machine=False, addresses=addresses)


def _database_settings() -> dict:
    return settings.DATABASES["default"]


@functools.lru_cache(maxsize=2)
def _services(_epoch: int) -> tuple[Service, ...]:
    found: list[Service | None] = []
    database = _database_settings()
    if "sqlite" not in database.get("ENGINE", "") and database.get("HOST"):
        host = str(database["HOST"])
        if not host.startswith("/"):  # a unix socket folder
            port = int(database.get("PORT") or 0) or (
                3306 if "mysql" in database["ENGINE"] else 5432
            )
            found.append(_service(host, port, "doce's database"))
    found.append(_service_url(settings.CELERY_BROKER_URL, "doce's broker"))
    found.append(_service_url(str(settings.CELERY_RESULT_BACKEND or ""), "doce's result store"))
    for cache in settings.CACHES.values():
        locations = cache.get("LOCATION") or []
        for location in [locations] if isinstance(locations, str) else locations:
            found.append(_service_url(str(location), "doce's cache"))
    found.append(_service_url(os.environ.get("DOCKER_HOST", ""), "the Docker daemon"))
    found.append(Service("doce's web server", machine=True, ports=frozenset({settings.DOCE_PORT})))
    found.append(
        Service("doce's site preview", machine=True, ports=frozenset({settings.DOCE_PREVIEW_PORT}))
    )
    found.append(
        Service("an OpenCode server port of doce's", machine=True, ports=settings.DOCE_SERVER_PORTS)
    )
    return tuple(service for service in found if service is not None)


def services() -> tuple[Service, ...]:
    """doce's own services, from its settings (resolved at most every 30 s)."""
    return _services(_epoch())


def service_at(address: str, port: int) -> Service | None:
    """The doce service reached at ``address``:``port``, if any."""
    ip = _ip(address)
    if ip is None:
        return None
    on_machine = _on_machine(ip) or str(ip) in machine_addresses()
    for service in services():
        if service.machine:
            if on_machine and (not service.ports or port in service.ports):
                return service
        elif str(ip) in service.addresses:
            return service
    return None


def _allowed(host: str, addresses: Iterable[str], port: int) -> bool:
    """Does an operator's ``DOCE_ENDPOINT_ALLOW`` entry (``host:port`` or
    ``host:low-high``) name this host (as typed, or one of its addresses) and port?"""
    addresses = set(addresses)
    for entry in settings.DOCE_ENDPOINT_ALLOW:
        entry_host, _, entry_ports = entry.rpartition(":")
        low, _, high = entry_ports.partition("-")
        if not int(low) <= port <= int(high or low):
            continue
        entry_host = entry_host.strip("[]").lower()
        entry_addresses = set(resolve(entry_host))
        if entry_host == host.lower() or addresses & entry_addresses:
            return True
        if _loopback(entry_host, entry_addresses) and _loopback(host, addresses):
            return True  # localhost, 127.0.0.1 and ::1 are one place
    return False


def _loopback(host: str, addresses: Iterable[str]) -> bool:
    ips = [_ip(address) for address in addresses]
    return host.lower() in LOOPBACK_NAMES or (
        bool(ips) and all(ip is not None and ip.is_loopback for ip in ips)
    )


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@functools.lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry)


def blocked_networks() -> tuple[IPNetwork, ...]:
    """``DOCE_ENDPOINT_BLOCKED_NETWORKS`` (validated at start-up by the settings)."""
    return _networks(tuple(str(e).strip() for e in settings.DOCE_ENDPOINT_BLOCKED_NETWORKS))


def address_candidates(ip: IPAddress) -> list[IPAddress]:
    """``ip`` and every IPv4 address it stands for: an IPv6 address that embeds one
    (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, 6to4 ``2002:…``) is
    that address too, and the unspecified ``::`` is ``0.0.0.0`` (both mean this host)."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.is_unspecified:
            candidates.append(ipaddress.IPv4Address(0))
        for embedded in (ip.ipv4_mapped, ip.sixtofour):
            if embedded is not None:
                candidates.append(embedded)
        if int(ip) >> 32 == 0 and not ip.is_loopback:  # ::a.b.c.d (deprecated); not ::1
            candidates.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return candidates


def address_blocked(address: str) -> bool:
    """Is this IP address in a blocked network? An IPv6 address that stands for an IPv4
    one (``address_candidates``) counts as that address too, so ``[::]`` and
    ``[::ffff:0.0.0.0]`` are blocked like ``0.0.0.0``."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone ("%eth0")
    return any(
        candidate in network
        for candidate in address_candidates(ip)
        for network in blocked_networks()
        if candidate.version == network.version
    )


def address_problem(address: str, port: int, *, trusted: bool, host: str = "") -> str:
    """Why ``address``:``port`` (``host`` as typed) may not be connected to for an
    endpoint ("" when it may): a blocked network, whoever asks; one of doce's own
    services, whoever asks; this machine or its networks, unless trusted or listed."""
    where = _where(host or address, port)
    if address_blocked(address):
        return BLOCKED_MESSAGE.format(where=where)
    service = service_at(address, port)
    if service is not None:
        return SERVICE_MESSAGE.format(where=where, what=service.what)
    if is_local(address) and not trusted and not _allowed(host or address, [address], port):
        return LOCAL_MESSAGE.format(where=where)
    return ""


def addresses_of(host: str) -> list[str]:
    """The addresses an endpoint's host stands for: a name of this machine (localhost,
    what containers call their host) is its loopback, whatever it resolves to here."""
    return ["127.0.0.1"] if host.lower() in LOOPBACK_NAMES else resolve(host)


def split(url: str) -> tuple[str, int] | None:
    """``url``'s host and port (the scheme's default when none), or None when it has no
    host. Also takes ``//host:port`` and ``host:port``."""
    try:
        parts = urlsplit(url if "//" in url else f"//{url}")
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host, port or (443 if parts.scheme == "https" else 80)


def endpoint_problem(url: str, *, trusted: bool) -> str:
    """Why an endpoint at ``url`` may not be used ("" when it may). A host that does not
    resolve here is judged by its name alone (the check runs again before every
    connection and when a sandbox starts)."""
    target = split(url)
    if target is None:
        return ""
    host, port = target
    for address in addresses_of(host):
        problem = address_problem(address, port, trusted=trusted, host=host)
        if problem:
            return problem
    return ""


@receiver(setting_changed)
def _forget(**kwargs) -> None:
    """Settings changed (tests, ``override_settings``): look the services up again."""
    _services.cache_clear()
    _machine_addresses.cache_clear()
    _resolve_name.cache_clear()
