"""providers.validation.key_check against peers that misbehave: one total deadline, a
capped body, never the remote's words, one message for every way of not answering, no
connection into a blocked network, and never an exception."""

from __future__ import annotations

import socket
import time

import httpcore
import pytest

from doce import endpoints
from providers import validation
from providers.validation import REJECTED, UNVERIFIED, key_check
from tests.providers.conftest import CLOSED_PORT_URL, new_key
from tests.providers.stubs import ProviderAPI, RawServer, read_request


def _trickle(head: bytes, byte: bytes = b"a", seconds: float = 20.0):
    """A peer that sends ``head`` and then one byte every 0.1 s (for ``seconds`` at most,
    or until the test ends)."""

    def script(conn: socket.socket, stop) -> None:
        read_request(conn)
        conn.sendall(head)
        for _ in range(int(seconds / 0.1)):
            if stop.wait(0.1):
                return
            conn.sendall(byte)

    return script


def _timed(**kwargs) -> tuple[validation.KeyCheck, float]:
    started = time.monotonic()
    check = key_check(**kwargs)
    return check, time.monotonic() - started


# --- one deadline for the whole check ------------------------------------------------------
def test_a_peer_that_trickles_its_headers_is_cut_off_at_the_deadline(settings):
    settings.DOCE_PROVIDER_CHECK_TIMEOUT = 0.5
    with RawServer(_trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ")) as slow:
        settings.DOCE_PROVIDER_API_URLS = {**settings.DOCE_PROVIDER_API_URLS, "groq": slow.url}
        check, took = _timed(provider_id="groq", api_key=new_key("gsk_"))
    assert (check.outcome, check.message) == (UNVERIFIED, "Groq did not answer in time")
    assert took < 2.5, f"the check took {took:.1f} s against a 0.5 s deadline"


def test_a_custom_endpoint_that_trickles_is_cut_off_too(settings):
    settings.DOCE_PROVIDER_CHECK_TIMEOUT = 0.5
    with RawServer(_trickle(b"HTTP/1.1 200 OK\r\nX-Slow: ")) as slow:
        check, took = _timed(provider_id="mine", api_key=new_key("sk-"), base_url=slow.url)
    assert check.outcome == UNVERIFIED and took < 2.5


def test_a_trickled_body_is_read_only_until_the_deadline(settings):
    """Google's 400 is the one answer whose body counts: what arrived by the deadline."""
    settings.DOCE_PROVIDER_CHECK_TIMEOUT = 0.5
    head = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 100000\r\n\r\n{"
    with RawServer(_trickle(head, byte=b" ")) as slow:
        settings.DOCE_PROVIDER_API_URLS = {**settings.DOCE_PROVIDER_API_URLS, "google": slow.url}
        check, took = _timed(provider_id="google", api_key=new_key("AIza"))
    assert (check.outcome, check.message) == (UNVERIFIED, "Google answered 400 (Bad Request)")
    assert took < 2.5


def test_a_body_the_answer_does_not_need_is_not_waited_for(settings):
    settings.DOCE_PROVIDER_CHECK_TIMEOUT = 5
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n{"
    with RawServer(_trickle(head, byte=b" ")) as slow:
        check, took = _timed(provider_id="x", api_key=new_key("sk-"), base_url=slow.url)
    assert check.outcome == validation.VALID and took < 2


@pytest.mark.parametrize(("padding", "outcome"), [("after", REJECTED), ("before", UNVERIFIED)])
def test_at_most_64_kb_of_a_body_is_read(provider_api, padding, outcome):
    marker = '{"error": {"details": [{"reason": "API_KEY_INVALID"}]}}'
    filler = " " * (200 * 1024)
    provider_api.answer(400, marker + filler if padding == "after" else filler + marker)
    assert key_check(provider_id="google", api_key=new_key("AIza")).outcome == outcome


# --- never the remote's words ------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "The endpoint answered 500 (Internal Server Error)"),
        (401, "The endpoint rejected the key (401)"),
        (403, "The endpoint rejected the key (403)"),
        (418, "The endpoint answered 418 (I'm a Teapot)"),
        (299, None),
        (599, "The endpoint answered 599"),
    ],
)
def test_a_remote_body_is_never_echoed(provider_api, status, expected):
    secret = "INTERNAL-ONLY db_password=hunter2-" + new_key("")
    provider_api.answer(status, {"error": {"message": secret}, "detail": secret})
    check = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=provider_api.url)
    assert "INTERNAL-ONLY" not in check.message and "hunter2" not in check.message
    if expected is not None:
        assert check.message == expected


def test_a_remote_reason_phrase_is_never_echoed():
    def script(conn, stop):
        read_request(conn)
        conn.sendall(b"HTTP/1.1 502 db_password=hunter2\r\nContent-Length: 0\r\n\r\n")

    with RawServer(script) as peer:
        check = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=peer.url)
    assert check.message == "The endpoint answered 502 (Bad Gateway)"


# --- not a port scanner ----------------------------------------------------------------------
def _closes_at_once(conn, stop):
    pass


def _speaks_another_protocol(conn, stop):
    conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
    read_request(conn)


def _answers_garbage(conn, stop):
    read_request(conn)
    conn.sendall(b"+OK redis ready\r\n\r\n")


@pytest.mark.parametrize("script", [_closes_at_once, _speaks_another_protocol, _answers_garbage])
def test_every_way_of_not_answering_http_reads_the_same(script):
    closed = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=CLOSED_PORT_URL)
    with RawServer(script) as peer:
        open_port = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=peer.url)
    assert (
        closed == open_port == validation.KeyCheck(UNVERIFIED, "The endpoint could not be reached")
    )


# --- blocked networks ----------------------------------------------------------------------
@pytest.fixture
def no_connect(monkeypatch):
    """Fails the test if anything is connected to; the attempts are listed."""
    attempts = []

    def connect_tcp(self, host, port, *args, **kwargs):
        attempts.append((host, port))
        raise AssertionError(f"connected to {host}:{port}")

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", connect_tcp)
    return attempts


@pytest.mark.parametrize(
    "base_url",
    [
        "http://169.254.169.254/latest",
        "http://169.254.170.2/v1",
        "http://[fe80::1]/v1",
        "http://[fd00:ec2::254]/v1",
        "http://[::ffff:169.254.169.254]/v1",
        "http://0.0.0.0:8080/v1",
        "http://2852039166/v1",  # 169.254.169.254 as one decimal number
        "http://[::]:8080/v1",
        "http://[::ffff:0.0.0.0]:8080/v1",
        "http://[::ffff:0:0]:8080/v1",
        "http://[fe80::]:8080/v1",
        "http://[fe80::1%25eth0]:8080/v1",
        "http://0:8080/v1",
        "http://0x0:8080/v1",
        "http://0.0:8080/v1",
        "http://000.000.000.000:8080/v1",
        "http://[::0.0.0.0]:8080/v1",
        "http://[2002:a9fe:a9fe::1]/v1",  # 6to4 of 169.254.169.254
    ],
)
def test_a_blocked_address_is_never_connected_to(no_connect, base_url):
    check = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=base_url)
    assert (check.outcome, check.message) == (UNVERIFIED, "The endpoint could not be reached")
    assert no_connect == []


def test_a_name_that_resolves_into_a_blocked_network_is_refused(no_connect, monkeypatch):
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "metadata.example.test":
            return real("169.254.169.254", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    check = key_check(
        provider_id="mine", api_key=new_key("sk-"), base_url="http://metadata.example.test/v1"
    )
    assert check.message == "The endpoint could not be reached" and no_connect == []


def test_the_operator_setting_applies_to_every_check(provider_api, settings):
    settings.DOCE_ENDPOINT_BLOCKED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    check = key_check(provider_id="openai", api_key=new_key())
    assert (check.outcome, check.message) == (UNVERIFIED, "OpenAI could not be reached")
    assert provider_api.seen == []  # never asked
    settings.DOCE_ENDPOINT_BLOCKED_NETWORKS = []
    assert key_check(provider_id="openai", api_key=new_key()).outcome == validation.VALID


def test_loopback_and_private_networks_stay_allowed():
    for address in ("127.0.0.1", "::1", "10.1.2.3", "172.16.0.9", "192.168.1.20", "fd12::1"):
        assert not endpoints.address_blocked(address), address
    for address in ("169.254.169.254", "fe80::1", "fd00:ec2::254", "0.0.0.0", "::ffff:a9fe:a9fe"):
        assert endpoints.address_blocked(address), address


# --- never raises -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "api_key",
    [
        "sk-ключ-" + new_key(""),
        "sk-café" + new_key(""),
        "sk-🔑" + new_key(""),
        "sk-or-v1-…abcd",
        "sk-a\r\nX-Injected: 1",
        "sk-\x00" + new_key(""),
        "sk- spaced",
    ],
    # Stable ids (the keys are random): every xdist worker must collect the same tests.
    ids=["cyrillic", "accented", "emoji", "ellipsis", "crlf", "nul", "space"],
)
def test_a_key_that_cannot_be_sent_is_refused_without_asking(provider_api, api_key):
    check = key_check(provider_id="openai", api_key=api_key)
    assert check.outcome == REJECTED and provider_api.seen == []
    assert api_key not in check.message
    custom = key_check(provider_id="mine", api_key=api_key, base_url=provider_api.url)
    assert custom.outcome == REJECTED and provider_api.seen == []


@pytest.mark.parametrize(
    "base_url",
    ["http://[::1", "http://exa mple/v1", "http://127.0.0.1:99999/v1", "ftp://127.0.0.1/", "x"],
)
def test_a_url_that_cannot_be_asked_reads_unreachable(base_url):
    check = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=base_url)
    assert (check.outcome, check.message) == (UNVERIFIED, "The endpoint could not be reached")


@pytest.mark.parametrize(
    "error", [RuntimeError("boom"), UnicodeEncodeError("ascii", "é", 0, 1, "x")]
)
def test_a_failure_deep_in_the_check_reads_unreachable(provider_api, monkeypatch, error):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(httpcore.ConnectionPool, "handle_request", fail)
    check = key_check(provider_id="anthropic", api_key=new_key("sk-ant-"))
    assert (check.outcome, check.message) == (UNVERIFIED, "Anthropic could not be reached")


def test_an_https_endpoint_is_asked_over_tls_and_a_bad_handshake_reads_unreachable():
    with ProviderAPI() as api:  # speaks plain HTTP: the TLS handshake fails
        base_url = api.url.replace("http://", "https://")
        check = key_check(provider_id="mine", api_key=new_key("sk-"), base_url=base_url)
    assert (check.outcome, check.message) == (UNVERIFIED, "The endpoint could not be reached")


@pytest.mark.parametrize(
    "address",
    ["::", "0::0", "::ffff:0.0.0.0", "::0.0.0.0", "fe80::", "fe80::1%eth0", "0.0.0.0", "0.1.2.3"],
)
def test_every_unspecified_or_link_local_form_is_blocked_like_0_0_0_0(address):
    assert endpoints.address_blocked(address), address


@pytest.mark.parametrize(
    "base_url", ["http://[::]:8080/v1", "http://[::ffff:0.0.0.0]:8080/v1", "http://[fe80::]/v1"]
)
def test_the_form_refuses_an_unspecified_or_link_local_endpoint(base_url):
    assert "does not connect to" in endpoints.endpoint_problem(base_url, trusted=True), base_url
