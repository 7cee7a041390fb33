"""message_error(): the typed error carried inside a 200 assistant message or event."""

from __future__ import annotations

import pytest

from doce.opencode import (
    CredentialRejected,
    MessageError,
    ProviderAPIError,
    ProviderAuthError,
    ProviderCredentialError,
    message_error,
    raise_for_message,
)
from tests.doce.opencode import responses as r


def test_a_good_reply_has_no_error():
    assert message_error(r.PROMPT_REPLY) is None
    assert raise_for_message(r.PROMPT_REPLY) is r.PROMPT_REPLY


def test_missing_credential():
    error = message_error(r.PROVIDER_AUTH_ERROR_REPLY)
    assert isinstance(error, ProviderAuthError)
    assert isinstance(error, ProviderCredentialError)  # one class for the user message
    assert error.provider_id == "anthropic" and error.retryable is False


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key(status):
    reply = {
        "info": {
            **r.REJECTED_KEY_REPLY["info"],
            "error": {
                "name": "APIError",
                "data": {"message": "no", "statusCode": status, "isRetryable": False},
            },
        }
    }
    error = message_error(reply)
    assert isinstance(error, CredentialRejected) and isinstance(error, ProviderCredentialError)
    assert error.status_code == status and error.provider_id == "stub"


def test_the_providers_answer_is_dropped():
    error = message_error(r.REJECTED_KEY_REPLY)
    assert "responseBody" not in error.data and "responseHeaders" not in error.data
    assert "sk-liv" not in str(error)


def test_other_provider_errors_follow_is_retryable():
    error = message_error(r.RATE_LIMITED_REPLY)
    assert type(error) is ProviderAPIError and error.retryable is True


def test_bare_info_items_and_session_error_events():
    info = r.PROVIDER_AUTH_ERROR_REPLY["info"]
    assert isinstance(message_error(info), ProviderAuthError)
    event_properties = {
        "sessionID": r.SESSION_ID,
        "error": {"name": "UnknownError", "data": {"message": "Model not found: x/y"}},
    }
    error = message_error(event_properties)
    assert type(error) is MessageError and "Model not found" in str(error)
    assert error.retryable is False
    aborted = {"info": {"error": {"name": "MessageAbortedError", "data": {"message": "Aborted"}}}}
    with pytest.raises(MessageError, match="MessageAbortedError"):
        raise_for_message(aborted)
