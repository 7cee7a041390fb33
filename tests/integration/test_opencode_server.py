"""A real OpenCode server (the pinned binary) against the stub LLM.

The stub records the Authorization header of every call OpenCode makes to the provider:
the proof that a credential set through ``PUT /auth`` reached it. One server ("alice")
is shared by the tests of this module (a start costs about 3.5 s and 300 MB); each test
sets the credential it needs.
"""

from __future__ import annotations

import json
import queue
import stat
import threading
import time

import httpx
import pytest
from django.test import override_settings

from bench.stub_llm import StubLLM
from doce.opencode import (
    ApiKeyCredential,
    CredentialRejected,
    OAuthFlowError,
    OpenCodeClient,
    Unauthorized,
)
from tests.conftest import deadline_in
from tests.doce.opencode.fakes import FIXTURES
from tests.doce.opencode.servers import running_server, stub_spec, text_of

pytestmark = pytest.mark.integration

REPLY = "Hello from the stub LLM."


@pytest.fixture(scope="module")
def stub():
    with StubLLM(reply=REPLY) as server:
        yield server


@pytest.fixture(scope="module")
def alice(stub, tmp_path_factory):
    # Operator config (DOCE_OPENCODE_CONFIG) adds a plugin with a fake OAuth provider.
    operator = tmp_path_factory.mktemp("operator") / "opencode.json"
    operator.write_text(json.dumps({"plugin": [(FIXTURES / "oauth_plugin.js").as_uri()]}))
    spec = stub_spec("alice", tmp_path_factory.mktemp("alice"), stub)
    with override_settings(DOCE_OPENCODE_CONFIG=str(operator)), running_server(spec) as server:
        yield server


@pytest.fixture(autouse=True)
def _stub_answers(stub):
    stub.status = 200
    stub.clear()
    yield
    stub.status = 200


def ask(client: OpenCodeClient, session_id: str, stub: StubLLM, **options) -> list:
    """Prompt once; return the Authorization headers the stub saw for it."""
    stub.clear()
    reply = client.prompt(session_id, "Say hello", **options)
    assert text_of(reply) == REPLY
    seen = stub.authorizations()
    assert seen, "OpenCode never called the provider"
    return sorted(set(seen), key=str)


def test_a_key_reaches_the_provider_and_follows_rotation_and_removal(alice, stub):
    with alice.client() as client:
        client.set_auth("stub", ApiKeyCredential("sk-alice-first"))
        client.dispose()  # other tests may have built the instance already
        session = client.session_create(title="credentials")["id"]
        assert ask(client, session, stub) == ["Bearer sk-alice-first"]

        # OpenCode caches providers per instance: a new key is not used until a dispose.
        client.set_auth("stub", ApiKeyCredential("sk-alice-second"))
        assert ask(client, session, stub) == ["Bearer sk-alice-first"]
        client.dispose()
        assert ask(client, session, stub) == ["Bearer sk-alice-second"]

        client.remove_auth("stub")
        client.dispose()
        assert ask(client, session, stub) == [None]  # a declared provider, called bare


def test_two_projects_never_see_each_others_credentials(alice, stub, tmp_path):
    with running_server(stub_spec("bob", tmp_path / "bob", stub)) as bob:
        with bob.client() as client:
            # Right after health, before any directory request: applies with no dispose.
            client.set_auth("stub", ApiKeyCredential("sk-bob-only"))
            bob_session = client.session_create()["id"]
            assert ask(client, bob_session, stub) == ["Bearer sk-bob-only"]
        with alice.client() as client:
            client.set_auth("stub", ApiKeyCredential("sk-alice-only"))
            client.dispose()
            alice_session = client.session_create()["id"]
            assert ask(client, alice_session, stub) == ["Bearer sk-alice-only"]
        with bob.client() as client:
            assert ask(client, bob_session, stub) == ["Bearer sk-bob-only"]

        files = {
            name: server.spec.layout.auth_file for name, server in (("alice", alice), ("bob", bob))
        }
        assert files["alice"] != files["bob"]
        for name, path in files.items():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            other = "bob" if name == "alice" else "alice"
            stored = json.loads(path.read_text())
            assert stored["stub"] == {"type": "api", "key": f"sk-{name}-only"}
            assert f"sk-{other}-only" not in path.read_text()


def test_an_oauth_code_flow_stores_the_tokens_in_the_servers_auth_json(alice):
    provider = "doce-oauth-test"  # declared by tests/fixtures/oauth_plugin.js
    with alice.client() as client:
        methods = client.provider_auth_methods()[provider]
        assert [m["type"] for m in methods] == ["oauth", "api"]
        step = client.oauth_authorize(provider, 0)
        assert step.method == "code" and step.url.startswith("https://auth.doce.test/")
        with pytest.raises(OAuthFlowError) as info:
            client.oauth_callback(provider, 0, code="wrong-code")
        assert info.value.name == "ProviderAuthOauthCallbackFailed"
        client.oauth_authorize(provider, 0)
        assert client.oauth_callback(provider, 0, code="good-code") is True
        stored = json.loads(alice.spec.layout.auth_file.read_text())[provider]
        assert stored == {
            "type": "oauth",
            "access": "test-access-token",
            "refresh": "test-refresh-token",
            "expires": 4102444800000,
        }
        assert client.oauth_authorize(provider, 1) is None  # the API-key method
        client.remove_auth(provider)
    assert provider not in json.loads(alice.spec.layout.auth_file.read_text())


def test_the_server_says_in_its_log_that_it_listens_on_its_port(alice):
    """The start's health step waits for this line, without a connection (a probe
    before it would hang unanswered): the binary must print it."""
    assert alice.runtime._listening(alice.state)()
    other = type(alice.state)(**{**alice.state.to_dict(), "port": alice.state.port + 1})
    assert not alice.runtime._listening(other)()  # another start's port does not count


def test_a_wrong_password_gets_401(alice):
    with OpenCodeClient(alice.state.base_url, "not-the-password") as client:
        with pytest.raises(Unauthorized):
            client.health()
        with pytest.raises(Unauthorized):
            client.session_list()
    assert httpx.get(f"{alice.state.base_url}/global/health").status_code == 401


def test_a_key_the_provider_rejects_is_a_typed_error(alice, stub):
    stub.status = 401
    with alice.client() as client:
        client.set_auth("stub", ApiKeyCredential("sk-alice-revoked"))
        client.dispose()
        session = client.session_create()["id"]
        with pytest.raises(CredentialRejected) as info:
            client.prompt(session, "Say hello")
    assert info.value.status_code == 401 and info.value.retryable is False
    assert set(stub.authorizations()) == {"Bearer sk-alice-revoked"}  # OpenCode may retry


def test_the_event_stream_yields_events_and_reconnects_after_a_dispose(alice, stub):
    events: queue.Queue = queue.Queue()
    with alice.client() as listener, alice.client() as client:
        stream = listener.events()

        def read() -> None:
            try:
                for event in stream:
                    events.put(event)
            except Exception as exc:  # surfaced by the assertions below
                events.put(exc)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_for(events, lambda e: e.type == "server.connected")
            # OpenCode subscribes the stream a moment after server.connected; a dispose
            # before that would not reach it.
            time.sleep(0.5)
            client.dispose()
            wait_for(events, lambda e: e.type == "server.instance.disposed")
            wait_for(events, lambda e: e.type == "server.connected")
            assert stream.connections == 2

            session = client.session_create()["id"]
            client.prompt_async(session, "Say hello")
            streamed = []
            wait_for(
                events,
                lambda e: e.type == "session.idle" and e.session_id == session,
                seen=streamed,
            )
            deltas = [
                e.properties.get("delta", "")
                for e in streamed
                if e.type == "message.part.delta" and e.session_id == session
            ]
            assert "".join(deltas) == REPLY  # the reply arrived as it was written
        finally:
            stream.close()
            reader.join(timeout=10)
        assert not reader.is_alive(), "close() did not end the stream"


def wait_for(events: queue.Queue, predicate, timeout: float = 30.0, seen: list | None = None):
    deadline = deadline_in(timeout)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("the expected event never came")
        try:
            event = events.get(timeout=remaining)
        except queue.Empty:
            continue
        if isinstance(event, Exception):
            raise event
        if seen is not None:
            seen.append(event)
        if predicate(event):
            return event
