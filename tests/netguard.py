"""pytest plugin: tests may only open connections to this machine (loopback, unix)."""

from __future__ import annotations

import ipaddress
import socket

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class OutboundNetworkBlocked(RuntimeError):
    pass


def _allowed(sock: socket.socket, address) -> bool:
    if sock.family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if not _allowed(self, address):
        raise OutboundNetworkBlocked(f"tests may not connect to {address!r} (loopback only)")
    return _original_connect(self, address)


def _guarded_connect_ex(self, address):
    if not _allowed(self, address):
        raise OutboundNetworkBlocked(f"tests may not connect to {address!r} (loopback only)")
    return _original_connect_ex(self, address)


def pytest_configure(config):
    socket.socket.connect = _guarded_connect
    socket.socket.connect_ex = _guarded_connect_ex
