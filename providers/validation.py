"""Does a provider accept a key? One cheap authenticated request per provider, with a
short timeout, to a base URL taken from settings (tests point them at local stubs).

    check = key_check(provider_id="openrouter", api_key=key)
    check.outcome  # "valid" | "rejected" | "unverified" | "unchecked"

``rejected`` (401/403, or Google's "API key not valid") means do not save the key;
``unverified`` means the provider could not say (unreachable, 5xx, rate limited): save
it, marked "not verified". ``message`` is for the user and never holds the key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from doce.opencode.errors import scrub
from doce.redaction import redact

logger = logging.getLogger(__name__)

VALID = "valid"
REJECTED = "rejected"
UNVERIFIED = "unverified"
UNCHECKED = "unchecked"  # no check exists for this provider (or checks are off)


@dataclass(frozen=True)
class KeyCheck:
    outcome: str
    message: str = ""


@dataclass(frozen=True)
class _Probe:
    """How to ask one provider: ``path`` under its base URL and the headers for a key."""

    path: str
    headers: Callable[[str], dict[str, str]]
    name: str


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


PROBES: dict[str, _Probe] = {
    "openrouter": _Probe("/api/v1/auth/key", _bearer, "OpenRouter"),
    "anthropic": _Probe(
        "/v1/models",
        lambda key: {"x-api-key": key, "anthropic-version": "2023-06-01"},
        "Anthropic",
    ),
    "openai": _Probe("/v1/models", _bearer, "OpenAI"),
    # The key goes in a header, not in ?key=: URLs end up in logs.
    "google": _Probe("/v1beta/models", lambda key: {"x-goog-api-key": key}, "Google"),
    "groq": _Probe("/openai/v1/models", _bearer, "Groq"),
}


def checks_enabled() -> bool:
    return bool(settings.DOCE_PROVIDER_CHECK_KEYS)


def has_check(provider_id: str, *, base_url: str = "") -> bool:
    return checks_enabled() and (bool(base_url) or provider_id in PROBES)


@sensitive_variables("api_key", "headers")
def key_check(*, provider_id: str, api_key: str, base_url: str = "") -> KeyCheck:
    """Ask the provider whether it takes ``api_key``. ``base_url`` marks a custom
    OpenAI-compatible endpoint (``GET {base_url}/models``)."""
    if not checks_enabled() or not api_key:
        return KeyCheck(UNCHECKED)
    if base_url:
        url, headers, name = base_url.rstrip("/") + "/models", _bearer(api_key), "The endpoint"
    elif provider_id in PROBES:
        probe = PROBES[provider_id]
        root = settings.DOCE_PROVIDER_API_URLS[provider_id].rstrip("/")
        url, headers, name = root + probe.path, probe.headers(api_key), probe.name
    else:
        return KeyCheck(UNCHECKED)
    try:
        with httpx.Client(
            timeout=settings.DOCE_PROVIDER_CHECK_TIMEOUT, follow_redirects=False
        ) as client:
            response = client.get(url, headers={**headers, "Accept": "application/json"})
    except httpx.TimeoutException:
        return KeyCheck(UNVERIFIED, f"{name} did not answer in time")
    except httpx.HTTPError as exc:
        detail = scrub(str(exc), (api_key,))[:120]
        logger.info("key check for %s: %s unreachable: %s", provider_id, url, detail)
        return KeyCheck(UNVERIFIED, f"{name} could not be reached ({type(exc).__name__})")
    google = provider_id == "google" and not base_url
    return _interpret(response, name=name, api_key=api_key, google=google)


@sensitive_variables("api_key")
def _interpret(response: httpx.Response, *, name: str, api_key: str, google: bool) -> KeyCheck:
    status = response.status_code
    reason = _reason(response, api_key)
    if 200 <= status < 300:
        return KeyCheck(VALID)
    if status in (401, 403) or (google and status == 400 and _google_bad_key(response)):
        return KeyCheck(REJECTED, f"{name} rejected the key ({status}): {reason}")
    if status == 429:
        return KeyCheck(UNVERIFIED, f"{name} is rate limiting requests (429)")
    return KeyCheck(UNVERIFIED, f"{name} answered {status}: {reason}")


def _reason(response: httpx.Response, api_key: str) -> str:
    """The provider's own words: ``error.message`` (OpenAI, Anthropic, Groq, OpenRouter,
    Google), ``message`` or ``detail``; else the status phrase. Never the key."""
    text = ""
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            text = str(error.get("message") or error.get("code") or "")
        elif isinstance(error, str):
            text = error
        text = text or str(body.get("message") or body.get("detail") or "")
    text = text or response.reason_phrase or "no reason given"
    text = " ".join(redact(scrub(text, (api_key,))).split())
    return text[:300]


def _google_bad_key(response: httpx.Response) -> bool:
    return "API_KEY_INVALID" in response.text or "API key not valid" in response.text
