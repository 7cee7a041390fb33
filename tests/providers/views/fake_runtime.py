"""A stand-in for the local runtime and its OpenCode client, for OAuth flow tests that
need no binary: it prepares real folders, and a successful callback writes auth.json the
way OpenCode does. tests/integration/test_providers_oauth.py runs the real thing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from doce.opencode import OAuthAuthorization, OAuthFlowError, OpenCodeTimeout
from doce.opencode.runtimes import RuntimeState

TOKENS = {
    "type": "oauth",
    "access": "gho_access_token_1234567890abcdef",
    "refresh": "ghr_refresh_token_1234567890abcdef",
    "expires": 4102444800000,
}


class FakeRuntime:
    def __init__(self) -> None:
        self.kind = "code"
        self.url = "https://auth.example.test/authorize?state=abc"
        self.tokens: dict | None = dict(TOKENS)
        self.good_code = "good-code"
        self.auto_result = "success"  # success | timeout | failed
        self.started: list = []
        self.removed: list[str] = []
        self.authorized: list[tuple] = []
        self.callbacks: list[tuple] = []
        self.authorize_timeouts: list[float | None] = []

    def start(self, spec):
        spec.layout.prepare()
        self.started.append(spec)
        return RuntimeState(
            runtime="local",
            data_dir=str(spec.data_dir),
            port=1,
            directory=str(spec.layout.workspace),
            pid=None,
        )

    def wait_listening(self, state, *, timeout):
        return True

    def wait_healthy(self, state, password, **kwargs):
        return {"healthy": True, "version": "fake"}

    def client(self, state, password, **options):
        return FakeClient(self, state, options)

    def remove(self, state):
        self.removed.append(state.data_dir)
        shutil.rmtree(state.data_dir, ignore_errors=True)

    def stop(self, state):
        return state


class FakeClient:
    def __init__(self, runtime: FakeRuntime, state: RuntimeState, options: dict) -> None:
        self.runtime = runtime
        self.state = state
        self.options = options

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def close(self):
        pass

    def oauth_authorize(self, provider_id, method, inputs=None):
        self.runtime.authorized.append((provider_id, method, inputs))
        self.runtime.authorize_timeouts.append(self.options.get("timeout"))
        return OAuthAuthorization(
            url=self.runtime.url,
            method=self.runtime.kind,
            instructions="Enter code ABCD-1234",
        )

    def oauth_callback(self, provider_id, method, code=None, *, timeout=None):
        self.runtime.callbacks.append((provider_id, method, code, timeout))
        if self.runtime.kind == "auto":
            if self.runtime.auto_result == "timeout":
                raise OpenCodeTimeout("timed out")
            ok = self.runtime.auto_result == "success"
        else:
            ok = code == self.runtime.good_code
        if not ok:
            raise OAuthFlowError(
                "400 ProviderAuthOauthCallbackFailed",
                status_code=400,
                name="ProviderAuthOauthCallbackFailed",
            )
        auth_file = RuntimeState.from_dict(self.state.to_dict()).layout.auth_file
        auth_file.parent.mkdir(parents=True, exist_ok=True)
        stored = {provider_id: self.runtime.tokens} if self.runtime.tokens else {}
        Path(auth_file).write_text(json.dumps(stored))
        return True
