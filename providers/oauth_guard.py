"""What a sign-in may not do: start more OpenCode servers than the bounds allow, or send
the browser back to a port it cannot reach.

- Bounds: every live sign-in is an OpenCode server of 300+ MB, so at most
  ``DOCE_OAUTH_MAX_FLOWS`` run at once, ``DOCE_OAUTH_MAX_FLOWS_PER_USER`` of them one
  user's. A flow counts from its row's creation until it ends or its time is up (the
  task or the reaper then removes its server).
- Local-port callbacks: some methods (OpenAI's browser login, for one) answer a sign-in
  address whose ``redirect_uri`` is ``http://localhost:PORT/...``: the provider sends the
  browser back to a port the sign-in server listens on. Only a browser on the doce host
  can reach that, and only when the server is not sandboxed (the sandbox opens the
  server's API port alone). Such methods are labelled on the connect page once a flow has
  shown them, and refused with a message that says why.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from providers.models import OAuthFlow

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_REDIRECT_PARAMS = ("redirect_uri", "redirect_url")
# The connect page looks at this many recent flows of a provider for its labels.
_LABEL_HISTORY = 50


class OAuthLimit(Exception):
    """Too many sign-ins at once; ``str()`` is the message for the user."""


def flows_check_capacity(*, user) -> None:
    """OAuthLimit when ``user`` or doce as a whole runs as many sign-ins as allowed."""
    live = Q(state__in=OAuthFlow.ACTIVE_STATES, expires_at__gt=timezone.now())
    counts = OAuthFlow.objects.aggregate(
        everyone=Count("pk", filter=live), mine=Count("pk", filter=live & Q(user=user))
    )
    per_user = settings.DOCE_OAUTH_MAX_FLOWS_PER_USER
    if counts["mine"] >= per_user:
        raise OAuthLimit(
            f"You already have {counts['mine']} sign-ins in progress (at most {per_user} at "
            "once). Finish or cancel one in Settings › Providers, then try again."
        )
    if counts["everyone"] >= settings.DOCE_OAUTH_MAX_FLOWS:
        raise OAuthLimit(
            "doce is running as many sign-ins as it allows right now. Try again in a few minutes."
        )


def is_loopback_host(host: str | None) -> bool:
    host = (host or "").strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def local_callback(url: str) -> str | None:
    """``host:port`` when the sign-in address sends the browser back to the local
    machine (its ``redirect_uri``), else None. The address itself is not looked at: it
    is the provider's page (an operator's own identity provider may well be local), not a
    port of the sign-in server."""
    try:
        query = parse_qs(urlsplit(url).query)
        redirects = [value for name in _REDIRECT_PARAMS for value in query.get(name, [])]
        for candidate in (urlsplit(value) for value in redirects):
            if candidate.scheme in ("http", "https") and is_loopback_host(candidate.hostname):
                port = candidate.port or (443 if candidate.scheme == "https" else 80)
                host = candidate.hostname
                return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    except ValueError:  # a malformed port or address: not one we can reach either way
        return None
    return None


def local_callback_refusal(where: str, *, browser_on_host: bool) -> str | None:
    """Why a sign-in that returns to ``where`` cannot work for this browser, or None."""
    if settings.DOCE_SANDBOX != "off":
        return (
            f"This sign-in method sends your browser back to {where} on the doce host, a "
            "port of its sign-in server that doce's sandbox keeps closed, so no browser can "
            "reach it. Connect with another method."
        )
    if not browser_on_host:
        return (
            f"This sign-in method sends your browser back to {where}: it works only from a "
            "browser running on the doce host itself (open doce there as "
            "http://localhost:…). Connect with another method from here."
        )
    return None


def local_callback_methods(provider_id: str) -> set[int]:
    """The methods of a provider that recent flows showed returning to a local port."""
    recent = (
        OAuthFlow.objects.filter(provider_id=provider_id)
        .exclude(url="")
        .order_by("-created_at")
        .values_list("method", "url")[:_LABEL_HISTORY]
    )
    return {method for method, url in recent if local_callback(url)}
