"""OpenCodeClient against httpx.MockTransport with the real server's response shapes."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx
import pytest

from doce.opencode import (
    ApiKeyCredential,
    BadRequest,
    CredentialRejected,
    ModelRef,
    NotFound,
    OAuthAuthorization,
    OAuthCredential,
    OAuthFlowError,
    OpenCodeClient,
    OpenCodeError,
    OpenCodeTimeout,
    OpenCodeUnavailable,
    ProviderAPIError,
    ProviderAuthError,
    ServerError,
    Unauthorized,
    WellKnownCredential,
)
from doce.opencode.client import HEALTH_PROBE_TIMEOUT
from tests.doce.opencode import responses as r

PASSWORD = "server-password-0123456789"
DIRECTORY = "/srv/doce/projects/7/workspace"
BASE = "http://127.0.0.1:4101"


class Recorder:
    """A MockTransport handler answering from a route table and recording requests."""

    def __init__(self, routes: dict[tuple[str, str], Callable | tuple[int, object]]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json=r.NOT_FOUND)
        if callable(answer):
            return answer(request)
        status, body = answer
        if status == 204:
            return httpx.Response(204)
        return httpx.Response(status, json=body)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make_client(routes, **options) -> tuple[OpenCodeClient, Recorder]:
    recorder = Recorder(routes)
    client = OpenCodeClient(
        BASE, PASSWORD, directory=DIRECTORY, transport=httpx.MockTransport(recorder), **options
    )
    return client, recorder


def body(request: httpx.Request):
    return json.loads(request.content) if request.content else None


def test_health_uses_basic_auth_and_no_directory():
    client, rec = make_client({("GET", "/global/health"): (200, r.HEALTH)})
    assert client.health() == {"healthy": True, "version": "1.18.33"}
    expected = base64.b64encode(f"opencode:{PASSWORD}".encode()).decode()
    assert rec.last.headers["authorization"] == f"Basic {expected}"
    assert "directory" not in rec.last.url.params
    assert rec.last.extensions["timeout"]["read"] == HEALTH_PROBE_TIMEOUT  # never hangs


SES = f"/session/{r.SESSION_ID}"
CATALOG = {"all": [], "default": {}, "connected": ["opencode"]}


@pytest.mark.parametrize(
    ("call", "method", "path", "answer"),
    [
        (lambda c: c.dispose(), "POST", "/instance/dispose", True),
        (lambda c: c.providers(), "GET", "/provider", CATALOG),
        (lambda c: c.provider_auth_methods(), "GET", "/provider/auth", r.PROVIDER_AUTH_METHODS),
        (lambda c: c.session_create(title="t"), "POST", "/session", r.SESSION),
        (lambda c: c.session_get(r.SESSION_ID), "GET", SES, r.SESSION),
        (lambda c: c.session_list(), "GET", "/session", [r.SESSION]),
        (lambda c: c.messages(r.SESSION_ID), "GET", f"{SES}/message", [r.PROMPT_REPLY]),
        (
            lambda c: c.session_status(),
            "GET",
            "/session/status",
            {r.SESSION_ID: {"type": "busy"}},
        ),
    ],
)
def test_instance_routes_carry_the_directory(call, method, path, answer):
    client, rec = make_client({(method, path): (200, answer)})
    assert call(client) == answer
    assert rec.last.method == method
    assert rec.last.url.params["directory"] == DIRECTORY
    assert rec.last.extensions["timeout"]["read"] is not None  # every call has a timeout


def test_server_wide_routes_do_not_carry_the_directory():
    client, rec = make_client(
        {
            ("PUT", "/auth/openrouter"): (200, True),
            ("DELETE", "/auth/openrouter"): (200, True),
        }
    )
    client.set_auth("openrouter", ApiKeyCredential("sk-or-v1-abc"))
    client.remove_auth("openrouter")
    assert [req.url.params.get("directory") for req in rec.requests] == [None, None]
    assert rec.requests[1].method == "DELETE"


@pytest.mark.parametrize(
    ("credential", "expected"),
    [
        (ApiKeyCredential("sk-ant-123"), {"type": "api", "key": "sk-ant-123"}),
        (
            ApiKeyCredential("cf-token", metadata={"accountId": "acc-1"}),
            {"type": "api", "key": "cf-token", "metadata": {"accountId": "acc-1"}},
        ),
        (
            OAuthCredential(access="at", refresh="rt", expires=1795830169009),
            {"type": "oauth", "access": "at", "refresh": "rt", "expires": 1795830169009},
        ),
        (
            OAuthCredential(
                access="at", refresh="rt", account_id="u-1", enterprise_url="ghe.example.com"
            ),
            {
                "type": "oauth",
                "access": "at",
                "refresh": "rt",
                "expires": 0,
                "accountId": "u-1",
                "enterpriseUrl": "ghe.example.com",
            },
        ),
        (
            WellKnownCredential("https://ai.example.com", "ORG_TOKEN", "tok"),
            {"type": "wellknown", "key": "ORG_TOKEN", "token": "tok"},
        ),
    ],
)
def test_set_auth_sends_opencodes_bodies(credential, expected):
    client, rec = make_client({("PUT", "/auth/anthropic"): (200, True)})
    client.set_auth("anthropic", credential)
    assert body(rec.last) == expected


def test_a_rejected_credential_never_echoes_the_secret():
    secret = "sk-ant-api03-" + "live-secret-value"  # made up, split so no scanner flags it

    def echo(request):  # OpenCode's validation messages echo the offending value
        return httpx.Response(
            400,
            json={
                "name": "BadRequest",
                "data": {"message": f'Expected x, got "{secret}"', "kind": "Payload"},
            },
        )

    client, _ = make_client({("PUT", "/auth/anthropic"): echo})
    with pytest.raises(BadRequest) as info:
        client.set_auth("anthropic", ApiKeyCredential(secret))
    error = info.value
    assert error.retryable is False and error.status_code == 400 and error.name == "BadRequest"
    for text in (str(error), repr(error), json.dumps(error.data)):
        assert secret not in text
    assert "[REDACTED]" in str(error)


@pytest.mark.parametrize(
    ("status", "payload", "exception", "retryable", "name"),
    [
        (400, r.BAD_REQUEST, BadRequest, False, "BadRequest"),
        (400, r.INVALID_REQUEST, BadRequest, False, "InvalidRequestError"),
        (400, r.OAUTH_MISSING, OAuthFlowError, False, "ProviderAuthOauthMissing"),
        (401, None, Unauthorized, False, None),
        (404, r.NOT_FOUND, NotFound, False, "NotFoundError"),
        (500, r.UNKNOWN_ERROR, ServerError, True, "UnknownError"),
        (503, None, ServerError, True, None),
        (409, {"name": "Conflict", "data": {"message": "busy"}}, OpenCodeError, False, "Conflict"),
    ],
)
def test_error_answers_become_typed_exceptions(status, payload, exception, retryable, name):
    def answer(request):
        if payload is None:
            return httpx.Response(status)  # OpenCode's 401 has an empty body
        return httpx.Response(status, json=payload)

    client, _ = make_client({("GET", f"/session/{r.SESSION_ID}"): answer})
    with pytest.raises(exception) as info:
        client.session_get(r.SESSION_ID)
    assert info.value.retryable is retryable
    assert info.value.status_code == status
    assert info.value.name == name
    if status == 401:
        assert "wrong server password" in str(info.value)
    if status == 404:
        assert "Session not found" in str(info.value)


def test_unreachable_and_slow_servers_are_retryable():
    def refuse(request):
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, exception in ((refuse, OpenCodeUnavailable), (slow, OpenCodeTimeout)):
        client = OpenCodeClient(BASE, PASSWORD, transport=httpx.MockTransport(handler))
        with pytest.raises(exception) as info:
            client.session_list()
        assert info.value.retryable is True
        assert PASSWORD not in str(info.value)


def test_prompt_sends_the_model_and_returns_the_reply():
    path = f"/session/{r.SESSION_ID}/message"
    client, rec = make_client({("POST", path): (200, r.PROMPT_REPLY)}, prompt_timeout=123)
    reply = client.prompt(r.SESSION_ID, "Build a bakery site", model="stub/stub-model")
    assert reply["parts"][1]["text"] == "hi there"
    assert body(rec.last) == {
        "parts": [{"type": "text", "text": "Build a bakery site"}],
        "model": {"providerID": "stub", "modelID": "stub-model"},
    }
    assert rec.last.extensions["timeout"]["read"] == 123


@pytest.mark.parametrize(
    ("reply", "exception", "retryable"),
    [
        (r.PROVIDER_AUTH_ERROR_REPLY, ProviderAuthError, False),
        (r.REJECTED_KEY_REPLY, CredentialRejected, False),
        (r.RATE_LIMITED_REPLY, ProviderAPIError, True),
    ],
)
def test_prompt_raises_the_error_carried_in_a_200_message(reply, exception, retryable):
    path = f"/session/{r.SESSION_ID}/message"
    client, _ = make_client({("POST", path): (200, reply)})
    with pytest.raises(exception) as info:
        client.prompt(r.SESSION_ID, "hi")
    assert info.value.retryable is retryable
    assert "sk-liv" not in str(info.value) and "responseBody" not in info.value.data
    # Callers that want the message anyway can have it.
    assert client.prompt(r.SESSION_ID, "hi", raise_on_error=False) == reply


def test_prompt_async_queues_with_a_message_id():
    path = f"/session/{r.SESSION_ID}/prompt_async"
    client, rec = make_client({("POST", path): (204, None)})
    model = ModelRef.parse("openrouter/anthropic/claude-sonnet-4")
    assert client.prompt_async(r.SESSION_ID, "go", model=model, message_id="msg_1") is None
    assert body(rec.last) == {
        "parts": [{"type": "text", "text": "go"}],
        "model": {"providerID": "openrouter", "modelID": "anthropic/claude-sonnet-4"},
        "messageID": "msg_1",
    }


def test_oauth_authorize_and_callback():
    client, rec = make_client(
        {
            ("POST", "/provider/github-copilot/oauth/authorize"): (200, r.AUTHORIZATION),
            ("POST", "/provider/openai/oauth/authorize"): (200, None),
            ("POST", "/provider/github-copilot/oauth/callback"): (200, True),
            ("POST", "/provider/openai/oauth/callback"): (400, r.OAUTH_MISSING),
        },
        oauth_callback_timeout=900,
    )
    step = client.oauth_authorize("github-copilot", 0, {"deploymentType": "github.com"})
    assert step == OAuthAuthorization(
        url="https://github.com/login/device", method="auto", instructions="Enter code: ABCD-1234"
    )
    assert body(rec.last) == {"method": 0, "inputs": {"deploymentType": "github.com"}}
    assert client.oauth_authorize("openai", 2) is None  # an API-key method
    assert client.oauth_callback("github-copilot", 0) is True
    assert body(rec.last) == {"method": 0}
    # The auto callback blocks until the user approves: its own long timeout.
    assert rec.last.extensions["timeout"]["read"] == 900
    with pytest.raises(OAuthFlowError) as info:
        client.oauth_callback("openai", 0, code="pasted-code-123")
    assert info.value.name == "ProviderAuthOauthMissing" and not info.value.retryable


def test_ids_cannot_change_the_route():
    client, rec = make_client({})
    for bad in ("../global/dispose", "a/b", "", "x?y=1"):
        with pytest.raises(ValueError):
            client.session_get(bad)
        with pytest.raises(ValueError):
            client.set_auth(bad, ApiKeyCredential("k"))
    assert rec.requests == []


def test_no_secret_in_reprs():
    client, _ = make_client({})
    credentials = [
        ApiKeyCredential("sk-secret-api-key"),
        OAuthCredential(access="secret-access", refresh="secret-refresh"),
        WellKnownCredential("https://ai.example.com", "ORG_TOKEN", "secret-token"),
    ]
    text = repr(client) + "".join(repr(c) for c in credentials) + str(vars(client))
    for secret in (
        PASSWORD,
        "sk-secret-api-key",
        "secret-access",
        "secret-refresh",
        "secret-token",
    ):
        assert secret not in text


def test_wait_healthy_retries_until_the_server_answers():
    answers = iter(["refuse", "timeout", "ok"])

    def handler(request):
        answer = next(answers)
        if answer == "refuse":
            raise httpx.ConnectError("refused", request=request)
        if answer == "timeout":
            raise httpx.ReadTimeout("hung", request=request)
        return httpx.Response(200, json=r.HEALTH)

    client = OpenCodeClient(BASE, PASSWORD, transport=httpx.MockTransport(handler))
    assert client.wait_healthy(deadline=5, interval=0.01) == r.HEALTH


def hung_probes(hung: int) -> tuple[OpenCodeClient, list[float]]:
    """A server whose first ``hung`` health probes time out; the probes' timeouts."""
    timeouts: list[float] = []

    def handler(request):
        timeouts.append(request.extensions["timeout"]["read"])
        if len(timeouts) <= hung:
            raise httpx.ReadTimeout("hung", request=request)
        return httpx.Response(200, json=r.HEALTH)

    return OpenCodeClient(BASE, PASSWORD, transport=httpx.MockTransport(handler)), timeouts


def test_health_probes_start_short_and_give_a_slow_server_more_time():
    """A probe in the window where the port accepts but nothing answers hangs until its
    own timeout: probes start short (no second-long stall) and double after a timeout."""
    client, timeouts = hung_probes(3)
    assert client.wait_healthy(deadline=5, interval=0.01) == r.HEALTH
    assert timeouts == [0.2, 0.4, 0.8, 1.6]


def test_health_probes_stay_short_until_the_server_listens():
    """Before the server listens a probe hangs unanswered (the sandbox's pasta accepts
    from the start): a longer one would only wait longer. Once it listens it answers as
    soon as it can, and a probe gets the longest timeout (a slow, loaded server)."""
    client, timeouts = hung_probes(4)
    listens = iter([False, False] + [True] * 3)
    answer = client.wait_healthy(deadline=5, interval=0.01, listening=lambda: next(listens))
    assert answer == r.HEALTH
    assert timeouts == [0.2, 0.2, 2.0, 2.0, 2.0]


def test_wait_healthy_gives_up():
    def refuse(request):
        raise httpx.ConnectError("refused", request=request)

    client = OpenCodeClient(BASE, PASSWORD, transport=httpx.MockTransport(refuse))
    with pytest.raises(OpenCodeTimeout, match="not healthy after"):
        client.wait_healthy(deadline=0.1, interval=0.02)
    with pytest.raises(OpenCodeUnavailable, match="exited"):
        client.wait_healthy(deadline=5, interval=0.01, alive=lambda: False)

    wrong = OpenCodeClient(
        BASE, PASSWORD, transport=httpx.MockTransport(lambda request: httpx.Response(401))
    )
    with pytest.raises(Unauthorized):  # someone else's server: do not wait for it
        wrong.wait_healthy(deadline=5, interval=0.01)


def test_model_refs():
    assert ModelRef.parse("anthropic/claude-sonnet-4-5") == ModelRef(
        "anthropic", "claude-sonnet-4-5"
    )
    assert str(ModelRef.parse("openrouter/meta/llama")) == "openrouter/meta/llama"
    for bad in ("gpt-4o", "/x", "x/"):
        with pytest.raises(ValueError):
            ModelRef.parse(bad)
