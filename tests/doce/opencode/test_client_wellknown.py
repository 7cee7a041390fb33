"""An organisation's entry goes under its URL (``PUT /auth/{url}``), as ``opencode auth
login <url>`` keeps it; its body names the environment variable, not the URL."""

from __future__ import annotations

import httpx
import pytest

from doce.opencode import WellKnownCredential, credential_from_json
from tests.doce.opencode.test_client import body, make_client

URL = "https://ai.example.com/org/"
ENCODED = "https%3A%2F%2Fai.example.com%2Forg"


def test_set_wellknown_puts_the_entry_under_the_url():
    seen: list[str] = []

    def route(request):
        seen.append(request.url.raw_path.decode())
        return httpx.Response(200, json=True)

    client, rec = make_client({("PUT", "/auth/https://ai.example.com/org"): route})
    client.set_wellknown(WellKnownCredential(URL, "ORG_TOKEN", "tok-123"))
    assert seen == [f"/auth/{ENCODED}"]  # one segment, trailing slash gone
    assert body(rec.last) == {"type": "wellknown", "key": "ORG_TOKEN", "token": "tok-123"}


def test_remove_wellknown_deletes_the_entry_under_the_url():
    client, rec = make_client({("DELETE", "/auth/https://ai.example.com/org"): (200, True)})
    client.remove_wellknown(URL)
    assert rec.last.url.raw_path.decode() == f"/auth/{ENCODED}"


@pytest.mark.parametrize("url", ["", "ai.example.com", "file:///etc/passwd", "ORG_TOKEN"])
def test_only_an_http_url_is_an_organisations_auth_id(url):
    client, rec = make_client({})
    with pytest.raises(ValueError):
        client.set_wellknown(WellKnownCredential(url, "ORG_TOKEN", "tok"))
    assert rec.requests == []


def test_an_entry_read_back_keeps_its_env_name_and_token():
    credential = credential_from_json({"type": "wellknown", "key": "ORG_TOKEN", "token": "t"})
    assert (credential.url, credential.env, credential.token) == ("", "ORG_TOKEN", "t")
    assert "token" not in repr(credential)
