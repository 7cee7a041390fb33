"""OpenCode failures as typed exceptions.

Every exception carries ``retryable``: True when the same call may succeed later (the
server is starting, restarting, overloaded or unreachable), False when retrying cannot
help and the user or operator must act (a rejected payload, a missing or rejected
credential, a wrong server password). Celery tasks use it to choose between a retry
with backoff and a clear message.

Messages never hold request bodies or secrets: OpenCode's validation messages echo the
offending value ("Expected array, got ..."), so the client scrubs the secrets it sent.
"""

from __future__ import annotations

from typing import Any

import httpx


class OpenCodeError(Exception):
    """Base class. ``name`` is OpenCode's error name (``BadRequest``, ``NotFoundError``,
    ``ProviderAuthError``, ...) when it gave one; ``data`` its ``data`` object."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        name: str | None = None,
        data: dict[str, Any] | None = None,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.name = name
        self.data = data or {}
        if retryable is not None:
            self.retryable = retryable

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code}, "
            f"name={self.name!r}, retryable={self.retryable})"
        )


# --- transport: the server could not be reached or did not answer in time -------------
class OpenCodeUnavailable(OpenCodeError):
    """Connection refused or reset, DNS, a dropped stream: try again later."""

    retryable = True


class OpenCodeTimeout(OpenCodeUnavailable):
    """No answer within the call's timeout."""


# --- HTTP errors the server answered with ---------------------------------------------
class BadRequest(OpenCodeError):
    """400: the server rejected the payload (``BadRequest``, ``InvalidRequestError``)."""


class OAuthFlowError(BadRequest):
    """400 from the OAuth routes: ``ProviderAuthOauthMissing`` (no pending authorize),
    ``ProviderAuthOauthCodeMissing``, ``ProviderAuthOauthCallbackFailed``,
    ``ProviderAuthValidationFailed``."""


class Unauthorized(OpenCodeError):
    """401/403: the server password is wrong (a doce bug or a foreign server on the port)."""


class NotFound(OpenCodeError):
    """404 ``NotFoundError``: an unknown session, message, ..."""


class ServerError(OpenCodeError):
    """5xx. OpenCode answers 500 ``UnknownError`` for an unknown provider or model too
    (details only in its log), so a caller should cap its retries."""

    retryable = True


# --- errors carried inside a 200 assistant message (``info.error``) --------------------
class MessageError(OpenCodeError):
    """The prompt was accepted but the assistant message ended with an error."""


class ProviderCredentialError(MessageError):
    """Base for "Provider not configured or key rejected": tell the user, do not retry."""

    def __init__(self, message: str, *, provider_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.provider_id = provider_id


class ProviderAuthError(ProviderCredentialError):
    """``ProviderAuthError``: no credential for the provider."""


class CredentialRejected(ProviderCredentialError):
    """``APIError`` with status 401 or 403: the provider rejected the key."""


class ProviderAPIError(MessageError):
    """Any other ``APIError`` (rate limit, provider outage); ``retryable`` follows
    OpenCode's own ``isRetryable``."""


def scrub(text: str, secrets: tuple[str, ...] | list[str]) -> str:
    """Replace every secret that occurs in ``text``; short strings are left alone because
    they would match ordinary words."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "[REDACTED]")
    return text


def message_error(message: dict[str, Any]) -> MessageError | None:
    """The typed error an assistant message ended with, or None.

    Takes what ``POST /session/{id}/message`` answers (``{"info", "parts"}``), one item of
    ``GET /session/{id}/message``, a bare ``info`` object, or a ``session.error`` event's
    properties (``{"sessionID", "error"}``).
    """
    info = message.get("info", message) if isinstance(message, dict) else {}
    error = info.get("error") if isinstance(info, dict) else None
    if not isinstance(error, dict):
        return None
    name = str(error.get("name") or "UnknownError")
    raw = error.get("data") if isinstance(error.get("data"), dict) else {}
    # The provider's own answer (body, headers) may echo part of a key: drop it.
    data = {k: v for k, v in raw.items() if k not in ("responseBody", "responseHeaders")}
    text = str(data.get("message") or name)[:500]
    if name == "ProviderAuthError":
        return ProviderAuthError(
            f"provider {data.get('providerID')!r} has no credential: {text}",
            name=name,
            data=data,
            provider_id=data.get("providerID"),
            retryable=False,
        )
    if name == "APIError":
        status = data.get("statusCode")
        if status in (401, 403):
            return CredentialRejected(
                f"the provider rejected the credential ({status}): {text}",
                name=name,
                data=data,
                status_code=status,
                provider_id=info.get("providerID"),
                retryable=False,
            )
        return ProviderAPIError(
            f"provider error ({status}): {text}",
            name=name,
            data=data,
            status_code=status,
            retryable=bool(data.get("isRetryable")),
        )
    return MessageError(f"{name}: {text}", name=name, data=data, retryable=False)


def raise_for_message(message: dict[str, Any]) -> dict[str, Any]:
    """Raise the message's typed error if it has one; else return the message."""
    error = message_error(message)
    if error is not None:
        raise error
    return message


_BY_STATUS: dict[int, type[OpenCodeError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
}


def from_response(response: httpx.Response, secrets: tuple[str, ...]) -> OpenCodeError:
    """Map an error answer to its exception: ``{"name", "data": {"message"}}`` for most
    routes, ``{"_tag", "message"}`` for request validation."""
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    name = body.get("name") or body.get("_tag")
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    detail = data.get("message") or body.get("message") or response.reason_phrase or ""
    if status == 401 and not body:
        detail = "wrong server password"
    message = scrub(f"{status} {name or ''}: {detail}".replace(" :", ":"), secrets)[:500]
    data = {k: scrub(v, secrets) if isinstance(v, str) else v for k, v in data.items()}
    if status >= 500:
        cls: type[OpenCodeError] = ServerError
    elif status == 400 and str(name).startswith("ProviderAuth"):
        cls = OAuthFlowError
    else:
        cls = _BY_STATUS.get(status, OpenCodeError)
    return cls(message, status_code=status, name=name, data=data)
