"""Fetching an organisation's ``/.well-known/opencode``: the key check's way of asking
(``providers.validation.capped_get``: the host resolved and vetted by ``doce.endpoints``
before every connection, one deadline for all of it, no redirects, no proxy), within
``DOCE_ORGANISATION_FETCH_TIMEOUT`` and ``MAX_DOCUMENT_BYTES``.

An organisation is registered by staff, so its URL may name this machine or its private
networks (``trusted``); doce's own services and the blocked networks never.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

import httpcore
from django.conf import settings

from doce.endpoints import endpoint_problem
from doce.inputs import has_config_substitution
from providers.organisations.document import (
    MAX_DOCUMENT_BYTES,
    Document,
    DocumentError,
    document_parse,
)
from providers.validation import EndpointBlocked, capped_get

logger = logging.getLogger(__name__)

WELL_KNOWN_PATH = "/.well-known/opencode"


def url_normalise(url: str) -> str:
    """The organisation's URL as ``opencode auth login`` keys it: an http(s) URL with a
    host, no user, query or fragment, no trailing slash. Raises ``DocumentError``."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (a bad port raises here)
    except ValueError as exc:
        raise DocumentError("not a URL") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DocumentError("an organisation's URL starts with https:// (or http://) and a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise DocumentError("an organisation's URL has no user, query or fragment")
    if has_config_substitution(url) or not url.isascii() or not url.isprintable():
        raise DocumentError("an organisation's URL is plain printable ASCII")
    return url.rstrip("/")


def document_url(url: str) -> str:
    return url.rstrip("/") + WELL_KNOWN_PATH


def document_fetch(url: str, *, trusted: bool = True) -> Document:
    """The organisation's document, checked (``document.document_check``). Raises
    ``DocumentError`` saying why not, in doce's own words."""
    problem = endpoint_problem(url, trusted=trusted)
    if problem:
        raise DocumentError(problem.rstrip("."))
    timeout = float(settings.DOCE_ORGANISATION_FETCH_TIMEOUT)
    try:
        status, body, cut = capped_get(
            document_url(url),
            {"Accept": "application/json"},
            limit=MAX_DOCUMENT_BYTES,
            timeout=timeout,
            trusted=trusted,
        )
    except EndpointBlocked as exc:
        raise DocumentError(
            "the organisation's host is in a network doce does not connect to"
        ) from exc
    except httpcore.TimeoutException as exc:
        raise DocumentError(f"the organisation did not answer within {timeout:g} s") from exc
    except Exception as exc:  # refused, reset, not HTTP, TLS, DNS: all alike
        logger.info("organisation %s: unreachable (%s)", url, type(exc).__name__)
        raise DocumentError("the organisation could not be reached") from exc
    if not 200 <= status < 300:
        raise DocumentError(f"the organisation answered {status} for {WELL_KNOWN_PATH}")
    if cut:
        raise DocumentError(f"the document is larger than {MAX_DOCUMENT_BYTES // 1024} KB")
    return document_parse(body)
