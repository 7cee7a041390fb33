"""Values the client sends and returns: credentials, model references, OAuth steps.

Credentials keep their secrets out of ``repr`` (tracebacks, Celery error reports, debug
pages) and name them in ``secrets`` so error messages can be scrubbed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class ApiKeyCredential:
    key: str = field(repr=False)
    metadata: Mapping[str, str] | None = None  # prompt inputs, e.g. a Cloudflare account id

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "api", "key": self.key}
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        return body

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class OAuthCredential:
    access: str = field(repr=False)
    refresh: str = field(repr=False)
    expires: int = 0  # milliseconds since the epoch; 0 = does not expire
    account_id: str | None = None
    enterprise_url: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "oauth",
            "access": self.access,
            "refresh": self.refresh,
            "expires": int(self.expires),
        }
        if self.account_id:
            body["accountId"] = self.account_id
        if self.enterprise_url:
            body["enterpriseUrl"] = self.enterprise_url
        return body

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.access, self.refresh)


@dataclass(frozen=True)
class WellKnownCredential:
    """What ``opencode auth login <url>`` stores for an organisation: the entry is kept
    **under the URL** (its auth id: ``PUT /auth/{url}``, ``OpenCodeClient.set_wellknown``),
    and its body names an environment variable (``key``, the document's ``auth.env``) and
    the token that OpenCode sets it to before it fetches ``<url>/.well-known/opencode``.
    An unreachable URL makes OpenCode answer 500 on every instance route until it
    restarts: fetch the document before injecting it (providers.organisations)."""

    url: str  # the auth id; "" when read back from a body alone (it is not in the body)
    env: str  # the environment variable's name
    token: str = field(repr=False)

    def to_json(self) -> dict[str, Any]:
        return {"type": "wellknown", "key": self.env, "token": self.token}

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.token,)


Credential = ApiKeyCredential | OAuthCredential | WellKnownCredential

#: Where the SDKs inside OpenCode look for credentials in the server's home (``$HOME``):
#: the AWS shared credentials file (a profile named by ``options.profile``) and Google's
#: application-default credentials (a service-account JSON).
AWS_CREDENTIALS_FILE = ".aws/credentials"
GOOGLE_CREDENTIALS_FILE = ".config/gcloud/application_default_credentials.json"
HOME_CREDENTIAL_FILES = (AWS_CREDENTIALS_FILE, GOOGLE_CREDENTIALS_FILE)


@dataclass(frozen=True)
class ProviderConfig:
    """What a provider needs beyond its auth entry, written when a server's
    ``opencode.json`` is (docs/providers.md):

    - ``options``: non-secret values, written as they are into
      ``provider.<id>.options`` (``resourceName``, ``region``, ``project``...);
    - ``headers``: extra HTTP headers whose values may be secret: each value goes to a
      0600 file in the server's home, and ``options.headers`` refers to it as
      ``{file:~/...}`` (OpenCode reads the file when it loads its config);
    - ``files``: secret files in the server's home, by a path of
      ``HOME_CREDENTIAL_FILES``, where the provider's SDK finds them itself.
    """

    provider_id: str
    options: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    files: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        unknown = set(self.files) - set(HOME_CREDENTIAL_FILES)
        if unknown:
            raise ValueError(f"not a credential file doce writes: {sorted(unknown)}")

    @property
    def secrets(self) -> tuple[str, ...]:
        return (*self.headers.values(), *self.files.values())


def credential_from_json(body: Mapping[str, Any]) -> Credential:
    """The inverse of ``to_json``: one auth.json entry as the typed credential.
    ValueError for an entry that is none of the three."""
    if not isinstance(body, Mapping):
        raise ValueError("an auth.json entry is a JSON object")
    kind = body.get("type")
    if kind == "api" and isinstance(body.get("key"), str):
        metadata = body.get("metadata")
        return ApiKeyCredential(key=body["key"], metadata=dict(metadata) if metadata else None)
    if kind == "oauth" and isinstance(body.get("access"), str):
        return OAuthCredential(
            access=body["access"],
            refresh=str(body.get("refresh") or ""),
            expires=int(body.get("expires") or 0),
            account_id=body.get("accountId") or None,
            enterprise_url=body.get("enterpriseUrl") or None,
        )
    if kind == "wellknown" and isinstance(body.get("token"), str):
        # The URL is the entry's auth.json key, not part of its body.
        return WellKnownCredential(url="", env=str(body.get("key") or ""), token=body["token"])
    raise ValueError(f"not a credential OpenCode stores (type {kind!r})")


@dataclass(frozen=True)
class ModelRef:
    provider_id: str
    model_id: str

    @classmethod
    def parse(cls, value: str) -> ModelRef:
        """``provider/model``; model ids may contain ``/`` themselves
        (``openrouter/anthropic/claude-sonnet-4``), so split at the first one only."""
        provider_id, sep, model_id = value.partition("/")
        if not sep or not provider_id or not model_id:
            raise ValueError(f"expected 'provider/model', got {value!r}")
        return cls(provider_id, model_id)

    def to_json(self) -> dict[str, str]:
        return {"providerID": self.provider_id, "modelID": self.model_id}

    def __str__(self) -> str:
        return f"{self.provider_id}/{self.model_id}"


@dataclass(frozen=True)
class OAuthAuthorization:
    """What ``/provider/{id}/oauth/authorize`` answers: show ``url`` and ``instructions``;
    ``method`` "code" means the user pastes a code, "auto" means the callback blocks
    until the user has approved."""

    url: str
    method: Literal["auto", "code"]
    instructions: str
