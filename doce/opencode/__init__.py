"""Everything doce knows about OpenCode: the binary, the HTTP client, its errors and events.

    from doce.opencode import OpenCodeClient, ApiKeyCredential, errors

The client is the only code that talks to an OpenCode server; doce.opencode.runtimes starts
and stops the servers themselves.
"""

from doce.opencode import errors
from doce.opencode.client import OpenCodeClient
from doce.opencode.errors import (
    BadRequest,
    CredentialRejected,
    MessageError,
    NotFound,
    OAuthFlowError,
    OpenCodeError,
    OpenCodeTimeout,
    OpenCodeUnavailable,
    ProviderAPIError,
    ProviderAuthError,
    ProviderCredentialError,
    ServerError,
    Unauthorized,
    message_error,
    raise_for_message,
)
from doce.opencode.events import Event, EventStream
from doce.opencode.types import (
    ApiKeyCredential,
    Credential,
    ModelRef,
    OAuthAuthorization,
    OAuthCredential,
    ProviderConfig,
    WellKnownCredential,
    credential_from_json,
)

__all__ = [
    "ApiKeyCredential",
    "BadRequest",
    "Credential",
    "CredentialRejected",
    "Event",
    "EventStream",
    "MessageError",
    "ModelRef",
    "NotFound",
    "OAuthAuthorization",
    "OAuthCredential",
    "OAuthFlowError",
    "OpenCodeClient",
    "OpenCodeError",
    "OpenCodeTimeout",
    "OpenCodeUnavailable",
    "ProviderAPIError",
    "ProviderConfig",
    "ProviderAuthError",
    "ProviderCredentialError",
    "ServerError",
    "Unauthorized",
    "WellKnownCredential",
    "credential_from_json",
    "errors",
    "message_error",
    "raise_for_message",
]
