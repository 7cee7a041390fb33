"""Fetching a document: the endpoint rule, one deadline, a size bound, no redirects."""

from __future__ import annotations

import time

import pytest

from providers.organisations.document import MAX_DOCUMENT_BYTES
from providers.organisations.fetch import DocumentError, document_fetch, url_normalise
from tests.providers.stubs import RawServer


def test_the_document_is_fetched_from_the_well_known_path(org_api):
    document = document_fetch(org_api.url + "/team")
    assert document.env_name == "ORG_TOKEN"
    assert [seen.path for seen in org_api.seen] == ["/team/.well-known/opencode"]


@pytest.mark.parametrize(
    ("status", "body", "why"),
    [
        (404, {}, "answered 404"),
        (302, {}, "answered 302"),  # a redirect is not followed
        (200, "x" * (MAX_DOCUMENT_BYTES + 10), "larger than 256 KB"),
        (200, "<html>", "not JSON"),
    ],
)
def test_answers_that_are_not_a_document(org_api, status, body, why):
    org_api.answer(status, body)
    with pytest.raises(DocumentError, match=why):
        document_fetch(org_api.url)


def test_a_slow_organisation_is_given_up_at_the_deadline(org_api, settings):
    settings.DOCE_ORGANISATION_FETCH_TIMEOUT = 0.5
    org_api.delay = 3
    started = time.monotonic()
    with pytest.raises(DocumentError, match="did not answer within 0.5 s"):
        document_fetch(org_api.url)
    assert time.monotonic() - started < 2.5


def test_a_trickling_body_is_given_up_at_the_deadline(settings):
    settings.DOCE_ORGANISATION_FETCH_TIMEOUT = 0.5

    def trickle(conn, stop):
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{")
        while not stop.wait(0.1):
            try:
                conn.sendall(b" ")
            except OSError:
                return

    with RawServer(trickle) as server:
        started = time.monotonic()
        with pytest.raises(DocumentError, match="did not answer"):
            document_fetch(server.url)
        assert time.monotonic() - started < 2.5


def test_the_endpoint_rule_applies(org_api, settings):
    settings.DOCE_ENDPOINT_ALLOW = []
    # Staff may name this machine; a caller that is not trusted may not.
    assert document_fetch(org_api.url, trusted=True).env_name == "ORG_TOKEN"
    with pytest.raises(DocumentError, match="only administrators"):
        document_fetch(org_api.url, trusted=False)
    with pytest.raises(DocumentError, match="network this server does not connect to"):
        document_fetch("http://169.254.169.254", trusted=True)
    with pytest.raises(DocumentError, match="doce's web server"):
        document_fetch(f"http://127.0.0.1:{settings.DOCE_PORT}", trusted=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://ai.example.com/", "https://ai.example.com"),
        ("  http://127.0.0.1:8123/org//  ", "http://127.0.0.1:8123/org"),
    ],
)
def test_urls_are_kept_as_opencode_keys_them(url, expected):
    assert url_normalise(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x.example",
        "ai.example.com",
        "https://u:p@x.example",
        "https://x.example/?a=1",
        "https://x.example/{env:HOME}",
        "",
    ],
)
def test_urls_that_cannot_be_an_organisations(url):
    with pytest.raises(DocumentError):
        url_normalise(url)
