"""Where a credential is sent: a URL's origin (scheme, host, port).

A custom endpoint's stored key and header values were typed for one origin; when its base
URL moves to another, they are forgotten unless the user types them again in the same
form (``providers.services.connection_update``), so an edited URL never carries a stored
secret to a new host. A change of path alone keeps them.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of ``url`` with the scheme's default port filled in and the
    host lower-cased; None when ``url`` has none (empty, or not a URL)."""
    try:
        parts = urlsplit((url or "").strip())
        port = parts.port
    except ValueError:  # a bad port or an unclosed "["
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if not scheme or not host:
        return None
    return scheme, host, port if port is not None else _DEFAULT_PORTS.get(scheme)


def origin_text(url: str) -> str:
    """``scheme://host:port`` for the audit log (never a path or a query, where a token
    could hide)."""
    found = origin(url)
    if found is None:
        return ""
    scheme, host, port = found
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


def origin_changed(old_url: str, new_url: str) -> bool:
    """Does a credential typed for ``old_url`` go somewhere else at ``new_url``? (A change
    of path or query is not a move; anything unreadable counts as one.)"""
    if not old_url:
        return False
    before = origin(old_url)
    return before is None or before != origin(new_url)
