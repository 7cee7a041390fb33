"""The one HTTP client for OpenCode servers: nothing else in doce talks to OpenCode.

One ``OpenCodeClient`` talks to one server (HTTP Basic, user ``opencode``) and, for
instance routes, one project directory. Every call has a timeout; failures become the
typed exceptions of ``doce.opencode.errors``. Facts about the server this relies on are
in docs/opencode.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from doce.opencode import errors
from doce.opencode.events import EventStream, OpenStream, abort_response, response_lines
from doce.opencode.types import Credential, ModelRef, OAuthAuthorization, WellKnownCredential

logger = logging.getLogger(__name__)

USERNAME = "opencode"
DEFAULT_TIMEOUT = 10.0
# GET /provider returns the whole catalog, about 6 MB of JSON.
CATALOG_TIMEOUT = 30.0
# A synchronous prompt lasts as long as the model works; an unreachable LLM alone keeps
# it blocked about 65 s (five retries). Prefer prompt_async.
PROMPT_TIMEOUT = 300.0
# An "auto" OAuth callback blocks until the user has approved in their browser.
OAUTH_CALLBACK_TIMEOUT = 900.0
HEALTH_PROBE_TIMEOUT = 0.2
HEALTH_PROBE_TIMEOUT_MAX = 2.0
HEALTH_PROBE_INTERVAL = 0.05
# The server sends a heartbeat every 10 s: a silence three times longer is a dead stream.
EVENT_READ_TIMEOUT = 30.0


@functools.cache
def _tls_context(plain_http: bool) -> ssl.SSLContext:
    """httpx builds a default SSL context (about 50 ms, CA bundle included) for every new
    client; doce talks plain HTTP to loopback, so build one once per process instead."""
    if plain_http:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # never used for http://
    return ssl.create_default_context()


class OpenCodeClient:
    """Typed calls to one OpenCode server.

    ``directory`` selects the project instance (``?directory=``) on instance routes; it
    is left out of ``/global/*`` and ``/auth/*``, which are server-wide.
    """

    def __init__(
        self,
        base_url: str,
        password: str,
        *,
        username: str = USERNAME,
        directory: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        prompt_timeout: float = PROMPT_TIMEOUT,
        oauth_callback_timeout: float = OAUTH_CALLBACK_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.directory = directory
        self.timeout = timeout
        self.prompt_timeout = prompt_timeout
        self.oauth_callback_timeout = oauth_callback_timeout
        self._http = httpx.Client(
            base_url=self.base_url,
            auth=httpx.BasicAuth(username, password),
            timeout=timeout,
            transport=transport,
            verify=_tls_context(self.base_url.startswith("http://")),
            # The server must never be reached through an operator's HTTP proxy.
            trust_env=False,
        )

    def __repr__(self) -> str:  # no password, ever
        return f"OpenCodeClient({self.base_url!r}, directory={self.directory!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OpenCodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- server ---------------------------------------------------------------------
    def health(self, *, timeout: float = HEALTH_PROBE_TIMEOUT) -> dict[str, Any]:
        """``{"healthy": true, "version": "1.18.33"}``."""
        return self._json("GET", "/global/health", instance=False, timeout=timeout)

    def wait_healthy(
        self,
        *,
        deadline: float,
        probe_timeout: float = HEALTH_PROBE_TIMEOUT,
        interval: float = HEALTH_PROBE_INTERVAL,
        alive: Callable[[], bool] | None = None,
        listening: Callable[[], bool] | None = None,
    ) -> dict[str, Any]:
        """Probe health until it answers, for at most ``deadline`` seconds.

        The port accepts connections before the server answers HTTP (in the sandbox,
        pasta accepts them from the start, long before the server listens), and a probe
        sent then hangs until its own timeout, never answered: so probes are short and
        poll fast. Once the server says it listens (``listening()``, when the runtime
        can tell), it answers as soon as it can: a probe then gets
        HEALTH_PROBE_TIMEOUT_MAX, for a slow server on a loaded machine. With no
        ``listening``, a probe that timed out gives the next one twice the time, up to
        that maximum. ``alive`` lets a runtime stop waiting as soon as the server
        process has died. Raises OpenCodeTimeout at the deadline and
        OpenCodeUnavailable when ``alive()`` turns false; Unauthorized (someone else's
        server on that port) at once.
        """
        give_up = time.monotonic() + deadline
        last: errors.OpenCodeError | None = None
        timeout = probe_timeout
        while True:
            if listening is not None and listening():
                timeout = HEALTH_PROBE_TIMEOUT_MAX
            try:
                answer = self.health(timeout=min(timeout, max(give_up - time.monotonic(), 0.05)))
                if answer.get("healthy"):
                    return answer
            except errors.OpenCodeTimeout as exc:
                last = exc
                if listening is None:
                    timeout = min(timeout * 2, HEALTH_PROBE_TIMEOUT_MAX)
            except (errors.OpenCodeUnavailable, errors.ServerError) as exc:
                last = exc
            if alive is not None and not alive():
                raise errors.OpenCodeUnavailable("the OpenCode server exited while starting")
            if time.monotonic() + interval > give_up:
                raise errors.OpenCodeTimeout(
                    f"OpenCode at {self.base_url} was not healthy after {deadline:.0f} s"
                    + (f" (last error: {last.message})" if last else "")
                )
            time.sleep(interval)

    # --- instance -------------------------------------------------------------------
    def dispose(self) -> bool:
        """Dispose this directory's instance so it rebuilds with the current credentials
        (cached providers) on the next request; ends open event streams."""
        return self._json("POST", "/instance/dispose")

    # --- providers ------------------------------------------------------------------
    def providers(self, *, timeout: float = CATALOG_TIMEOUT) -> dict[str, Any]:
        """``{"all": [Provider], "default": {providerID: modelID}, "connected": [ids]}``."""
        return self._json("GET", "/provider", timeout=timeout)

    def provider_auth_methods(self) -> dict[str, list[dict[str, Any]]]:
        """``{providerID: [{"type": "oauth"|"api", "label", "prompts"?}]}``; a provider
        absent here takes a plain API key."""
        return self._json("GET", "/provider/auth")

    # --- credentials ----------------------------------------------------------------
    def set_auth(self, provider_id: str, credential: Credential) -> None:
        """``PUT /auth/{provider}``. A running instance keeps using the old credential
        until ``dispose()``; before the first directory request it applies at once."""
        self._auth_put(_segment(provider_id), credential)

    def remove_auth(self, provider_id: str) -> None:
        """``DELETE /auth/{provider}``; succeeds when nothing was stored too."""
        self._json("DELETE", f"/auth/{_segment(provider_id)}", instance=False)

    def _auth_put(self, auth_id: str, credential: Credential) -> None:
        self._json(
            "PUT",
            f"/auth/{auth_id}",
            instance=False,
            json=credential.to_json(),
            secrets=credential.secrets,
        )

    def set_wellknown(self, credential: WellKnownCredential) -> None:
        """``PUT /auth/{url}``: an organisation's entry, kept under its URL as ``opencode
        auth login <url>`` keeps it (the URL percent-encoded into one path segment,
        which OpenCode 1.18.33 takes as the auth id; docs/providers.md). The next
        instance build fetches ``<url>/.well-known/opencode``: fetch it first."""
        self._auth_put(_url_segment(credential.url), credential)

    def remove_wellknown(self, url: str) -> None:
        """``DELETE /auth/{url}``; succeeds when nothing was stored too."""
        self._json("DELETE", f"/auth/{_url_segment(url)}", instance=False)

    # --- OAuth ----------------------------------------------------------------------
    def oauth_authorize(
        self, provider_id: str, method: int, inputs: dict[str, str] | None = None
    ) -> OAuthAuthorization | None:
        """Start an OAuth flow; None when ``method`` is an API-key method. One pending
        flow per provider per server: run each flow on its own server."""
        body: dict[str, Any] = {"method": method}
        if inputs:
            body["inputs"] = inputs
        answer = self._json("POST", f"/provider/{_segment(provider_id)}/oauth/authorize", json=body)
        if answer is None:
            return None
        return OAuthAuthorization(
            url=answer["url"], method=answer["method"], instructions=answer.get("instructions", "")
        )

    def oauth_callback(
        self,
        provider_id: str,
        method: int,
        code: str | None = None,
        *,
        timeout: float | None = None,
    ) -> bool:
        """Finish an OAuth flow; the tokens land in the server's auth.json. For "auto"
        flows this BLOCKS until the user approves: call it from a task, never a view."""
        body: dict[str, Any] = {"method": method}
        if code is not None:
            body["code"] = code
        return self._json(
            "POST",
            f"/provider/{_segment(provider_id)}/oauth/callback",
            json=body,
            timeout=timeout or self.oauth_callback_timeout,
            secrets=(code,) if code else (),
        )

    # --- sessions -------------------------------------------------------------------
    def session_create(self, *, title: str | None = None) -> dict[str, Any]:
        return self._json("POST", "/session", json={"title": title} if title else {})

    def session_get(self, session_id: str) -> dict[str, Any]:
        return self._json("GET", f"/session/{_segment(session_id)}")

    def session_list(self) -> list[dict[str, Any]]:
        return self._json("GET", "/session")

    def session_abort(self, session_id: str) -> bool:
        """Stop what the session is doing (a prompt, its retries)."""
        return self._json("POST", f"/session/{_segment(session_id)}/abort")

    def session_delete(self, session_id: str) -> bool:
        return self._json("DELETE", f"/session/{_segment(session_id)}")

    def session_status(self) -> dict[str, dict[str, Any]]:
        """``{session_id: {"type": "busy" | "retry", ...}}`` for the sessions at work;
        an idle session is absent (or ``{"type": "idle"}``)."""
        return self._json("GET", "/session/status") or {}

    def prompt(
        self,
        session_id: str,
        text: str,
        *,
        model: ModelRef | str | None = None,
        message_id: str | None = None,
        agent: str | None = None,
        timeout: float | None = None,
        raise_on_error: bool = True,
    ) -> dict[str, Any]:
        """Send a prompt and wait for the reply ``{"info": AssistantMessage, "parts"}``.

        OpenCode answers 200 even when the provider failed; with ``raise_on_error`` the
        message's error is raised as ProviderAuthError / CredentialRejected / ... A
        timeout does not mean the prompt was dropped: check ``messages()`` before
        sending it again.
        """
        answer = self._json(
            "POST",
            f"/session/{_segment(session_id)}/message",
            json=_prompt_body(text, model, message_id, agent),
            timeout=timeout or self.prompt_timeout,
        )
        return errors.raise_for_message(answer) if raise_on_error else answer

    def prompt_async(
        self,
        session_id: str,
        text: str,
        *,
        model: ModelRef | str | None = None,
        message_id: str | None = None,
        agent: str | None = None,
    ) -> None:
        """Queue a prompt (204) and return; follow it with ``events()`` or ``messages()``."""
        self._request(
            "POST",
            f"/session/{_segment(session_id)}/prompt_async",
            json=_prompt_body(text, model, message_id, agent),
        )

    def messages(self, session_id: str, *, limit: int | None = None) -> list[dict[str, Any]]:
        """``[{"info", "parts"}]``, oldest first."""
        params = {"limit": limit} if limit else None
        return self._json("GET", f"/session/{_segment(session_id)}/message", params=params)

    # --- events ---------------------------------------------------------------------
    def events(
        self,
        *,
        reconnect: bool = True,
        read_timeout: float = EVENT_READ_TIMEOUT,
        give_up_after: float = 30.0,
    ) -> EventStream:
        """The ``/event`` stream of this directory's instance, reconnecting after a
        dispose. Iterate it in a thread or task of its own; ``close()`` ends it."""

        @contextlib.contextmanager
        def connect() -> Iterator[OpenStream]:
            timeout = httpx.Timeout(self.timeout, read=read_timeout)
            with (
                self._translate_errors("GET", "/event"),
                self._http.stream(
                    "GET", "/event", params=self._params(True, None), timeout=timeout
                ) as response,
            ):
                if response.status_code >= 400:
                    response.read()
                    raise errors.from_response(response, ())
                yield OpenStream(
                    response_lines(response), functools.partial(abort_response, response)
                )

        return EventStream(connect, reconnect=reconnect, give_up_after=give_up_after)

    # --- plumbing -------------------------------------------------------------------
    def _params(self, instance: bool, params: dict[str, Any] | None) -> dict[str, Any] | None:
        if instance and self.directory:
            return {**(params or {}), "directory": self.directory}
        return params

    def _request(
        self,
        method: str,
        path: str,
        *,
        instance: bool = True,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None | object = httpx.USE_CLIENT_DEFAULT,
        secrets: tuple[str, ...] = (),
    ) -> httpx.Response:
        started = time.perf_counter()
        with self._translate_errors(method, path, secrets):
            response = self._http.request(
                method,
                path,
                json=json,
                params=self._params(instance, params),
                timeout=timeout,  # type: ignore[arg-type]
            )
        logger.debug(
            "opencode %s %s -> %s in %.1f ms",
            method,
            path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.status_code >= 400:
            raise errors.from_response(response, secrets)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise errors.ServerError(
                f"OpenCode answered {method} {path} with a body that is not JSON",
                status_code=response.status_code,
            ) from None

    @contextlib.contextmanager
    def _translate_errors(
        self, method: str, path: str, secrets: tuple[str, ...] = ()
    ) -> Iterator[None]:
        try:
            yield
        except httpx.TimeoutException as exc:
            raise errors.OpenCodeTimeout(
                f"OpenCode {method} {path} timed out ({type(exc).__name__})"
            ) from None
        except httpx.TransportError as exc:
            detail = errors.scrub(str(exc), secrets)[:200]
            raise errors.OpenCodeUnavailable(
                f"OpenCode {method} {path} failed: {type(exc).__name__}: {detail}"
            ) from None


def _url_segment(url: str) -> str:
    """An organisation's URL as one path segment: OpenCode strips its trailing slashes
    when it reads the entry, so it is stored without them."""
    url = url.rstrip("/")
    if not url.startswith(("https://", "http://")):
        raise ValueError("an organisation's auth id is an http(s) URL")
    return quote(url, safe="")


def _segment(value: str) -> str:
    """Path segments come from ids (provider, session): refuse anything that would
    change the route."""
    if not value or "/" in value or value in (".", "..") or "?" in value or "#" in value:
        raise ValueError(f"invalid id {value!r}")
    return value


def _prompt_body(
    text: str, model: ModelRef | str | None, message_id: str | None, agent: str | None
) -> dict[str, Any]:
    body: dict[str, Any] = {"parts": [{"type": "text", "text": text}]}
    if model is not None:
        ref = ModelRef.parse(model) if isinstance(model, str) else model
        body["model"] = ref.to_json()
    if message_id:
        body["messageID"] = message_id
    if agent:
        body["agent"] = agent
    return body
