"""Does a provider accept a key? One cheap authenticated request per provider, within one
deadline, to a base URL taken from settings (tests point them at local stubs).

    check = key_check(provider_id="openrouter", api_key=key)
    check.outcome  # "valid" | "rejected" | "unverified" | "unchecked"
    check.models   # a custom endpoint's model ids, when its /models listed them

``rejected`` (401/403, Google's "API key not valid", or a key that cannot be sent at
all) means do not save the key; ``unverified`` means the provider could not say
(unreachable, 5xx, rate limited): save it, marked "not verified". ``message`` is for the
user: our own words only, never the key and never what the remote end answered (a
custom endpoint is any URL a user types: its body could be anything, and its errors
would tell open ports from closed ones).

A custom endpoint's answer to ``GET {base_url}/models``, OpenAI's ``{"data": [{"id":
...}]}``, is also its model list: with ``list_models=True`` it is read into
``check.models`` (``models_from_body``: at most ``MAX_MODELS`` well-formed ids), and the
endpoint is asked even without a key (the outcome then stays ``unchecked``).

The check never raises, whatever the key or the URL. It has one total deadline
(``DOCE_PROVIDER_CHECK_TIMEOUT``) for resolving, connecting, sending and reading, reads
at most ``MAX_BODY_BYTES`` of a body (``MAX_MODELS_BODY_BYTES`` of a model list), and
only when the answer depends on it, and never
connects to an address in ``DOCE_ENDPOINT_BLOCKED_NETWORKS`` (link-local, cloud metadata):
the host is resolved here and the vetted address is the one connected to.
"""

from __future__ import annotations

import functools
import http
import json
import logging
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpcore
import httpx
from django.conf import settings
from django.views.decorators.debug import sensitive_variables

from doce import endpoints
from doce.inputs import has_config_substitution

logger = logging.getLogger(__name__)

VALID = "valid"
REJECTED = "rejected"
UNVERIFIED = "unverified"
UNCHECKED = "unchecked"  # no check exists for this provider (or checks are off)

#: At most this much of an answer's body is read (Google's 400 needs one)...
MAX_BODY_BYTES = 64 * 1024
#: ... and of a custom endpoint's model list (a cut-off list is not JSON: not used).
MAX_MODELS_BODY_BYTES = 1024 * 1024
#: A custom endpoint's models: at most this many ids of at most this many characters.
MAX_MODELS = 500
MAX_MODEL_ID = 255

# Like every ``KeyCheck.message``, without a final full stop (forms add one).
NOT_ASCII_MESSAGE = (
    "An API key is plain ASCII text: remove the other characters (accented or non-Latin "
    "letters, “…”, emoji) and paste the key itself, not a shortened hint like sk-…abcd"
)
NOT_SENDABLE_MESSAGE = (
    "The key contains spaces or control characters and cannot be sent: enter it again"
)


@dataclass(frozen=True)
class KeyCheck:
    outcome: str
    message: str = ""
    #: A custom endpoint's model ids from its ``/models`` (None: it did not list any).
    models: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Probe:
    """How to ask one provider: ``path`` under its base URL and the headers for a key."""

    path: str
    headers: Callable[[str], dict[str, str]]
    name: str


@sensitive_variables()
def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@sensitive_variables()
def _anthropic(key: str) -> dict[str, str]:
    return {"x-api-key": key, "anthropic-version": "2023-06-01"}


@sensitive_variables()
def _google(key: str) -> dict[str, str]:
    # The key goes in a header, not in ?key=: URLs end up in logs.
    return {"x-goog-api-key": key}


PROBES: dict[str, _Probe] = {
    "openrouter": _Probe("/api/v1/auth/key", _bearer, "OpenRouter"),
    "anthropic": _Probe("/v1/models", _anthropic, "Anthropic"),
    "openai": _Probe("/v1/models", _bearer, "OpenAI"),
    "google": _Probe("/v1beta/models", _google, "Google"),
    "groq": _Probe("/openai/v1/models", _bearer, "Groq"),
}


def checks_enabled() -> bool:
    return bool(settings.DOCE_PROVIDER_CHECK_KEYS)


def has_check(provider_id: str, *, base_url: str = "") -> bool:
    return checks_enabled() and (bool(base_url) or provider_id in PROBES)


@sensitive_variables()
def key_problem(api_key: str) -> str:
    """Why ``api_key`` cannot be sent in an HTTP header ("" when it can): it is not ASCII,
    or holds spaces or control characters."""
    if not api_key.isascii():
        return NOT_ASCII_MESSAGE
    if any(not char.isprintable() or char.isspace() for char in api_key):
        return NOT_SENDABLE_MESSAGE
    return ""


# --- where a check may connect ---------------------------------------------------------
class EndpointBlocked(Exception):
    """The host is, or resolves to, an address ``doce.endpoints`` refuses (a blocked
    network, one of doce's own services, or this machine for an untrusted caller)."""


def _resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (an IP literal: itself), in the order to try:
    looked up afresh for every connection (no cache a rebinding name could outlive)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: dict[str, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        addresses.setdefault(str(sockaddr[0]))
    return list(addresses)


# --- one request, one deadline ----------------------------------------------------------
class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own sync backend, with every connect, read and write given at most the
    time left until ``deadline`` (so a peer that trickles a byte at a time is cut off at
    the deadline, not after a read timeout per byte), and every host resolved and vetted
    here: an address in a blocked network is never connected to."""

    def __init__(self, deadline: float, *, trusted: bool) -> None:
        self.deadline = deadline
        self.trusted = trusted  # may connect to this machine's networks (doce.endpoints)
        self._backend = httpcore.SyncBackend()

    def time_left(self, timeout: float | None, error: type[Exception]) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise error("the key check's deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        try:
            addresses = _resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise httpcore.ConnectError("the host did not resolve") from exc
        for address in addresses:  # the one rule for endpoints (doce.endpoints)
            if endpoints.address_problem(address, port, trusted=self.trusted, host=host):
                raise EndpointBlocked(host)
        error: Exception = httpcore.ConnectError("the host has no address")
        for address in addresses:
            try:
                stream = self._backend.connect_tcp(
                    address,
                    port,
                    timeout=self.time_left(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
            else:
                return _DeadlineStream(stream, self)
        raise error

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise httpcore.ConnectError("unix sockets are not used for key checks")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, stream: httpcore.NetworkStream, backend: _DeadlineBackend) -> None:
        self._stream = stream
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._backend.time_left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._backend.time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        stream = self._stream.start_tls(
            ssl_context, server_hostname, self._backend.time_left(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(stream, self._backend)

    def get_extra_info(self, info: str):
        return self._stream.get_extra_info(info)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


@sensitive_variables()
def _ask(
    url: str,
    headers: dict[str, str],
    *,
    wants_body: Callable[[int], bool],
    limit: int = MAX_BODY_BYTES,
    trusted: bool,
    timeout: float | None = None,
):
    """GET ``url`` within the check's deadline (``timeout``, by default
    ``DOCE_PROVIDER_CHECK_TIMEOUT``): the status and, when ``wants_body(status)``, at
    most ``limit`` bytes of the body (what arrived before the deadline). No redirects, no
    proxies from the environment."""
    timeout = float(settings.DOCE_PROVIDER_CHECK_TIMEOUT if timeout is None else timeout)
    backend = _DeadlineBackend(time.monotonic() + timeout, trusted=trusted)
    target = httpx.URL(url)
    core_url = httpcore.URL(
        scheme=target.raw_scheme, host=target.raw_host, port=target.port, target=target.raw_path
    )
    raw_headers = [(k.encode("ascii"), v.encode("ascii")) for k, v in headers.items()]
    extensions = {"timeout": dict.fromkeys(("connect", "read", "write", "pool"), timeout)}
    with (
        httpcore.ConnectionPool(
            ssl_context=_ssl_context(), network_backend=backend, max_connections=1
        ) as pool,
        pool.stream("GET", core_url, headers=raw_headers, extensions=extensions) as response,
    ):
        status = response.status
        body = _read_capped(response, backend, limit) if wants_body(status) else b""
    return status, body


def capped_get(
    url: str, headers: Mapping[str, str], *, limit: int, timeout: float, trusted: bool
) -> tuple[int, bytes, bool]:
    """The key check's way of asking, for other callers (an organisation's document):
    GET ``url`` with one deadline, vetting every address it connects to
    (``doce.endpoints``; ``trusted`` as for ``key_check``), no redirects. Returns the
    status, at most ``limit`` bytes of a 2xx body, and whether it was longer. Raises
    ``EndpointBlocked``, ``httpcore.TimeoutException`` (also for a body still arriving
    at the deadline) and the other errors of a failed request."""
    started = time.monotonic()
    status, body = _ask(
        url,
        dict(headers),
        wants_body=lambda status: 200 <= status < 300,
        limit=limit + 1,  # one byte more tells a body of exactly ``limit`` from a longer one
        trusted=trusted,
        timeout=timeout,
    )
    if len(body) <= limit and time.monotonic() - started >= timeout:
        raise httpcore.ReadTimeout("the deadline passed while the body was read")
    return status, body[:limit], len(body) > limit


def _read_capped(response: httpcore.Response, backend: _DeadlineBackend, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_stream():
            chunks.append(chunk)
            size += len(chunk)
            if size >= limit or time.monotonic() >= backend.deadline:
                break
    except (httpcore.TimeoutException, httpcore.NetworkError, httpcore.ProtocolError):
        pass  # the deadline, or a broken body: decide on what arrived
    return b"".join(chunks)[:limit]


# --- the check ----------------------------------------------------------------------------
@sensitive_variables()
def key_check(
    *,
    provider_id: str,
    api_key: str,
    base_url: str = "",
    list_models: bool = False,
    headers: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> KeyCheck:
    """Ask the provider whether it takes ``api_key``. ``base_url`` marks a custom
    OpenAI-compatible endpoint (``GET {base_url}/models``, sent with its extra
    ``headers`` as OpenCode sends them); ``list_models`` reads its answer as its model
    list (asked with no key too). ``trusted``: whoever typed ``base_url`` may reach this
    machine and its private networks (staff; ``doce.endpoints``); the operator's own
    provider URLs always may. doce's own services are never asked. Never raises."""
    try:
        return _key_check(
            provider_id=provider_id,
            api_key=api_key,
            base_url=base_url,
            list_models=bool(base_url) and list_models,
            extra=dict(headers or {}) if base_url else {},
            trusted=trusted or not base_url,
        )
    except Exception as exc:  # a key check must never turn a page into a 500
        logger.warning("key check for %s failed unexpectedly (%s)", provider_id, type(exc).__name__)
        return KeyCheck(UNVERIFIED, f"{_name(provider_id, base_url)} could not be reached")


def _name(provider_id: str, base_url: str) -> str:
    if base_url:
        return "The endpoint"
    probe = PROBES.get(provider_id)
    return probe.name if probe is not None else "The provider"


@sensitive_variables()
def _key_check(
    *,
    provider_id: str,
    api_key: str,
    base_url: str,
    list_models: bool,
    extra: dict[str, str],
    trusted: bool,
) -> KeyCheck:
    if not checks_enabled() or not (api_key or list_models):
        return KeyCheck(UNCHECKED)
    name = _name(provider_id, base_url)
    if base_url:
        url = base_url.rstrip("/") + "/models"
        headers = {**extra, **(_bearer(api_key) if api_key else {})}
    elif provider_id in PROBES:
        probe = PROBES[provider_id]
        root = settings.DOCE_PROVIDER_API_URLS[provider_id].rstrip("/")
        url, headers = root + probe.path, probe.headers(api_key)
    else:
        return KeyCheck(UNCHECKED)
    if api_key and (problem := key_problem(api_key)):
        return KeyCheck(REJECTED, problem)  # no provider can take it: nothing is sent
    google = provider_id == "google" and not base_url
    check = _asked(
        url,
        headers,
        provider_id=provider_id,
        name=name,
        google=google,
        listing=list_models,
        trusted=trusted,
    )
    if not api_key:  # a keyless endpoint asked for its models: no key was checked
        message = f"{name} asks for a key" if check.outcome == REJECTED else check.message
        check = KeyCheck(UNCHECKED, message, check.models)
    return check


@sensitive_variables()
def _asked(
    url: str,
    headers: dict[str, str],
    *,
    provider_id: str,
    name: str,
    google: bool,
    listing: bool,
    trusted: bool,
) -> KeyCheck:
    """Ask, and say what the answer means; ``listing``: the answer is a custom endpoint's
    model list, read into ``KeyCheck.models``."""
    try:
        status, body = _ask(
            url,
            {**headers, "Accept": "application/json"},
            wants_body=lambda status: (
                (google and status == 400) or (listing and 200 <= status < 300)
            ),
            limit=MAX_MODELS_BODY_BYTES if listing else MAX_BODY_BYTES,
            trusted=trusted,
        )
    except EndpointBlocked:
        logger.warning(
            "key check for %s: the host is blocked (DOCE_ENDPOINT_BLOCKED_NETWORKS, doce's "
            "own services, or this machine's networks for a non-staff user); not asked",
            provider_id,
        )
        return KeyCheck(UNVERIFIED, f"{name} could not be reached")
    except httpcore.TimeoutException:
        return KeyCheck(UNVERIFIED, f"{name} did not answer in time")
    except Exception as exc:  # refused, reset, not HTTP, TLS, DNS, a bad URL: all alike
        logger.info("key check for %s: unreachable (%s)", provider_id, type(exc).__name__)
        return KeyCheck(UNVERIFIED, f"{name} could not be reached")
    check = _interpret(status, body, name=name, google=google)
    if listing and check.outcome == VALID:
        models = models_from_body(body)
        message = "" if models else f"{name} listed no model ids"
        check = KeyCheck(VALID, message, models or None)
    return check


def models_from_body(body: bytes) -> tuple[str, ...]:
    """The model ids of an OpenAI-style ``/models`` answer (``{"data": [{"id": ...}]}``),
    in its order: trimmed, without repeats, without ids that are not one printable word
    of at most ``MAX_MODEL_ID`` characters; at most ``MAX_MODELS``. Anything else: ()."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ()
    items = data.get("data") if isinstance(data, dict) else None
    models: dict[str, None] = {}  # an ordered set
    for item in items if isinstance(items, list) else ():
        model = item.get("id") if isinstance(item, dict) else None
        if not isinstance(model, str):
            continue
        model = model.strip()
        if (
            model
            and len(model) <= MAX_MODEL_ID
            and model.isprintable()
            and " " not in model
            and not has_config_substitution(model)
        ):
            models.setdefault(model)
            if len(models) >= MAX_MODELS:
                break
    return tuple(models)


def _interpret(status: int, body: bytes, *, name: str, google: bool) -> KeyCheck:
    """Our words for an answer: the status code and a generic reason, never the body."""
    if 200 <= status < 300:
        return KeyCheck(VALID)
    if status in (401, 403) or (google and status == 400 and _google_bad_key(body)):
        return KeyCheck(REJECTED, f"{name} rejected the key ({status})")
    if status == 429:
        return KeyCheck(UNVERIFIED, f"{name} is rate limiting requests (429)")
    try:
        phrase = f" ({http.HTTPStatus(status).phrase})"
    except ValueError:
        phrase = ""
    return KeyCheck(UNVERIFIED, f"{name} answered {status}{phrase}")


def _google_bad_key(body: bytes) -> bool:
    return b"API_KEY_INVALID" in body or b"API key not valid" in body
