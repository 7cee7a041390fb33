"""A document that passes the rules, and a fake organisation serving it on loopback."""

from __future__ import annotations

import copy

import pytest

from tests.providers.stubs import ProviderAPI

DOCUMENT = {
    "auth": {"command": ["example-org", "auth", "print token"], "env": "ORG_TOKEN"},
    "config": {
        "provider": {
            "orgllm": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Org LLM",
                "options": {
                    "baseURL": "https://llm.example.test/v1",
                    "headers": {"Authorization": "Bearer {env:ORG_TOKEN}"},
                },
                "models": {"org-model": {"name": "Org Model"}, "org-mini": {}},
            }
        }
    },
}
TOKEN = "org-token-" + "5c1e9a7d3b2f4e68"  # made up


def document(**changes) -> dict:
    data = copy.deepcopy(DOCUMENT)
    for path, value in changes.items():
        target = data
        *parents, last = path.split("__")
        for key in parents:
            target = target[key]
        target[last] = value
    return data


@pytest.fixture
def org_api():
    """A fake organisation at ``org_api.url`` answering every GET with the document."""
    with ProviderAPI() as api:
        api.answer(200, copy.deepcopy(DOCUMENT))
        yield api
