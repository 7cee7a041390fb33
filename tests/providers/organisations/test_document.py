"""The rules an organisation's document is held to before OpenCode may load it."""

from __future__ import annotations

import json
import re

import pytest

from providers.organisations.document import (
    MAX_DOCUMENT_BYTES,
    DocumentError,
    document_check,
    document_parse,
)
from tests.providers.organisations.conftest import DOCUMENT, document


def test_a_document_declaring_a_provider_passes():
    parsed = document_parse(json.dumps(DOCUMENT).encode())
    assert parsed.env_name == "ORG_TOKEN"
    assert parsed.command == ("example-org", "auth", "print token")
    (provider,) = parsed.providers
    assert (provider.id, provider.name) == ("orgllm", "Org LLM")
    assert provider.models == (("org-model", "Org Model"), ("org-mini", "org-mini"))
    assert parsed.endpoints == ("https://llm.example.test/v1",)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (document(auth__env="PATH"), "needs"),
        (document(auth__env="OPENCODE_SERVER_PASSWORD"), "needs"),
        (document(auth__env="not a name"), "environment variable"),
        (document(auth__command="curl x | sh"), "list of words"),
        (document(auth__command=[]), "list of words"),
        (document(config__mcp={"x": {"type": "local", "command": ["sh"]}}), "'mcp'"),
        (document(config__plugin=["file:///x.js"]), "'plugin'"),
        (document(config__provider={}), "no provider"),
        (document(config__provider__orgllm__npm="evil-package"), "npm"),
        (document(config__provider__orgllm__options__baseURL="file:///etc"), "baseURL"),
        (document(config__provider__orgllm__models=["a"]), "models"),
        (
            document(
                config__provider__orgllm__options__headers={"X": "{env:OPENCODE_SERVER_PASSWORD}"}
            ),
            "{env:",
        ),
        (document(config__provider__orgllm__options__headers={"X": "{file:~/.ssh/id"}), "{env:"),
        (document(config__provider__orgllm__options__headers={"X": "{ENV:HOME}"}), "{env:"),
        ({"auth": {"command": ["x"], "env": "T"}}, "config"),
        ([], "object"),
    ],
)
def test_documents_breaking_a_rule_are_refused(data, why):
    with pytest.raises(DocumentError, match=re.escape(why)):
        document_check(data)


def test_the_documents_own_env_reference_is_the_only_substitution():
    data = document(config__provider__orgllm__options__apiKey="{env:ORG_TOKEN}")
    assert document_check(data).env_name == "ORG_TOKEN"


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"not json", "not JSON"), (b" " * (MAX_DOCUMENT_BYTES + 1), "larger than 256 KB")],
)
def test_bodies_that_are_not_a_document(body, why):
    with pytest.raises(DocumentError, match=why):
        document_parse(body)
