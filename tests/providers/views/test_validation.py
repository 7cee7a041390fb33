"""providers.validation.key_check against a local stand-in for each provider's API."""

from __future__ import annotations

import pytest

from providers.validation import REJECTED, UNCHECKED, UNVERIFIED, VALID, key_check
from tests.providers.conftest import new_key
from tests.providers.stubs import ProviderAPI


@pytest.mark.parametrize(
    ("provider_id", "path", "header", "value"),
    [
        ("openrouter", "/api/v1/auth/key", "authorization", "Bearer {key}"),
        ("anthropic", "/v1/models", "x-api-key", "{key}"),
        ("openai", "/v1/models", "authorization", "Bearer {key}"),
        ("google", "/v1beta/models", "x-goog-api-key", "{key}"),
        ("groq", "/openai/v1/models", "authorization", "Bearer {key}"),
    ],
)
def test_each_provider_is_asked_its_own_way(provider_api, provider_id, path, header, value):
    key = new_key()
    assert key_check(provider_id=provider_id, api_key=key).outcome == VALID
    [seen] = provider_api.seen
    assert seen.path == path
    assert seen.headers[header] == value.format(key=key)
    assert key not in seen.path  # never in the URL
    if provider_id == "anthropic":
        assert seen.headers["anthropic-version"]


def test_a_custom_endpoint_is_asked_for_its_models(provider_api):
    key = new_key()
    check = key_check(provider_id="mine", api_key=key, base_url=provider_api.url + "/v1/")
    assert check.outcome == VALID
    assert provider_api.seen[0].path == "/v1/models"
    assert provider_api.seen[0].headers["authorization"] == f"Bearer {key}"


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_reject_in_our_words_only(provider_api, status):
    provider_api.answer(status, {"error": {"message": "Incorrect API key provided: sk-ab***cd"}})
    check = key_check(provider_id="openai", api_key=new_key())
    assert check.outcome == REJECTED
    assert check.message == f"OpenAI rejected the key ({status})"


def test_googles_invalid_key_answer_is_a_rejection(provider_api):
    provider_api.answer(
        400,
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{"reason": "API_KEY_INVALID"}],
            }
        },
    )
    check = key_check(provider_id="google", api_key=new_key("AIza"))
    assert check.outcome == REJECTED and check.message == "Google rejected the key (400)"


def test_the_key_never_appears_in_the_message_even_if_echoed(provider_api):
    key = new_key("sk-proj-")
    provider_api.answer(401, {"error": {"message": f"key {key} is revoked", "type": "x"}})
    check = key_check(provider_id="openai", api_key=key)
    assert check.outcome == REJECTED and key not in check.message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            500,
            {"error": {"message": "upstream down"}},
            "OpenRouter answered 500 (Internal Server Error)",
        ),
        (429, {}, "OpenRouter is rate limiting requests (429)"),
        (404, "<html>nope</html>", "OpenRouter answered 404 (Not Found)"),
    ],
)
def test_answers_that_say_nothing_about_the_key_leave_it_unverified(
    provider_api, status, body, expected
):
    provider_api.answer(status, body)
    check = key_check(provider_id="openrouter", api_key=new_key())
    assert check.outcome == UNVERIFIED
    assert check.message == expected


def test_an_unreachable_provider_is_unverified():
    check = key_check(provider_id="anthropic", api_key=new_key())  # the closed port
    assert check.outcome == UNVERIFIED
    assert check.message == "Anthropic could not be reached"


def test_a_slow_provider_times_out_quickly(settings):
    settings.DOCE_PROVIDER_CHECK_TIMEOUT = 0.3
    with ProviderAPI() as slow:
        slow.delay = 2
        settings.DOCE_PROVIDER_API_URLS = {**settings.DOCE_PROVIDER_API_URLS, "groq": slow.url}
        check = key_check(provider_id="groq", api_key=new_key("gsk_"))
    assert check.outcome == UNVERIFIED and check.message == "Groq did not answer in time"


def test_providers_without_a_check_and_disabled_checks_are_unchecked(provider_api, settings):
    assert key_check(provider_id="deepseek", api_key=new_key()).outcome == UNCHECKED
    settings.DOCE_PROVIDER_CHECK_KEYS = False
    assert key_check(provider_id="openai", api_key=new_key()).outcome == UNCHECKED
    assert provider_api.seen == []
