import io
import logging

import pytest

from doce.redaction import REDACTED, RedactSecretsFilter, redact

SECRETS = [
    "sk-ant-api03-" + "A" * 40,
    "sk-or-v1-" + "b" * 64,
    "sk-proj-" + "C1" * 20,
    "sk-" + "d" * 48,
    "ghp_" + "E" * 36,
    "github_pat_" + "F" * 40,
    "AIza" + "G" * 35,
    "gsk_" + "h" * 40,
    "gAAAAABnT" + "i" * 80 + "==",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_known_key_shapes_are_redacted(secret):
    text = f"calling provider with {secret} now"
    assert secret not in redact(text)
    assert REDACTED in redact(text)


@pytest.mark.parametrize(
    "text",
    [
        "Authorization: Bearer abcdefghijklmnop",
        "header Basic b3BlbmNvZGU6c2VjcmV0cGFzcw==",
        '{"type": "api", "key": "my-self-hosted-key-123"}',
        "api_key=plain-looking-value-999&x=1",
        "password: hunter2hunter2",
    ],
)
def test_labelled_values_are_redacted(text):
    cleaned = redact(text)
    assert REDACTED in cleaned
    for secret in (
        "abcdefghijklmnop",
        "b3BlbmNvZGU6c2VjcmV0cGFzcw",
        "my-self-hosted-key-123",
        "plain-looking-value-999",
        "hunter2hunter2",
    ):
        assert secret not in cleaned


def test_ordinary_text_is_left_alone():
    text = "project 42 started on port 39123 with model openrouter/anthropic/claude-sonnet-4"
    assert redact(text) == text


def test_filter_redacts_arguments_and_tracebacks():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecretsFilter())
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("key was %s", SECRETS[0])
        try:
            raise ValueError(f"bad key {SECRETS[1]}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    output = stream.getvalue()
    assert SECRETS[0] not in output and SECRETS[1] not in output
    assert output.count(REDACTED) >= 2
    assert "ValueError" in output  # the traceback itself survives
