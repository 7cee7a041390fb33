"""The one rule for the hosts an endpoint may name (doce.endpoints): doce's own services
never, whoever asks; this machine and its private networks only for staff or what the
operator lists; public hosts always. The sandbox's side of it is in
tests/doce/opencode/runtimes/test_sandbox_plan.py and, with real processes,
tests/integration/test_endpoint_containment.py."""

from __future__ import annotations

import socket

import pytest
from django.core.exceptions import ImproperlyConfigured

from doce import endpoints
from tests.conftest import settings_from


@pytest.fixture
def rule(settings):
    """No operator list (the test settings list every loopback port), doce's services
    at the usual places."""
    settings.DOCE_ENDPOINT_ALLOW = []
    settings.DOCE_PORT = 8000
    settings.DOCE_PREVIEW_PORT = 8001
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/0"
    settings.CELERY_RESULT_BACKEND = "redis://127.0.0.1:6379/0"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "redis://localhost:6380/1",
        }
    }
    return settings


def _database(monkeypatch, host: str, port: str = "5432") -> None:
    """doce's database at ``host``:``port`` (the test run's own connection untouched)."""
    database = {"ENGINE": "django.db.backends.postgresql", "HOST": host, "PORT": port}
    monkeypatch.setattr(endpoints, "_database_settings", lambda: database)
    endpoints._services.cache_clear()


@pytest.mark.parametrize("trusted", [False, True])
@pytest.mark.parametrize(
    ("url", "what"),
    [
        ("http://127.0.0.1:6379/v1", "doce's broker"),
        ("http://localhost:6380/v1", "doce's cache"),
        ("http://127.0.0.1:8000/v1", "doce's web server"),
        ("http://[::1]:8000/v1", "doce's web server"),
        ("http://127.0.0.2:8000/v1", "doce's web server"),  # all of 127/8 is loopback
        ("http://127.0.0.1:8001/v1", "doce's site preview"),
        ("http://[::ffff:127.0.0.1]:6379/v1", "doce's broker"),
        ("http://127.0.0.1:20000/v1", "an OpenCode server port of doce's"),
        ("http://127.0.0.1:29999/v1", "an OpenCode server port of doce's"),
        ("http://host.docker.internal:6379/v1", "doce's broker"),
    ],
)
def test_doces_own_services_are_refused_whoever_asks(rule, url, what, trusted):
    problem = endpoints.endpoint_problem(url, trusted=trusted)
    assert what in problem and "no endpoint may point there" in problem


def test_the_database_comes_from_its_settings(rule, monkeypatch):
    _database(monkeypatch, "127.0.0.1", "5433")
    assert "doce's database" in endpoints.endpoint_problem("http://127.0.0.1:5433", trusted=True)
    _database(monkeypatch, "/var/run/postgresql")  # a unix socket: no port to close
    assert endpoints.endpoint_problem("http://127.0.0.1:5433", trusted=True) == ""


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254/v1", "http://0.0.0.0:11434/v1", "http://[::]:11434/v1"]
)
def test_a_blocked_network_is_refused_whoever_asks_and_whatever_is_listed(rule, url):
    rule.DOCE_ENDPOINT_ALLOW = ["169.254.169.254:80", "0.0.0.0:11434"]
    for trusted in (False, True):
        assert "does not connect to" in endpoints.endpoint_problem(url, trusted=trusted)


def test_the_operators_list_cannot_open_a_service(rule):
    rule.DOCE_ENDPOINT_ALLOW = ["127.0.0.1:6379", "127.0.0.1:1-65535"]
    assert "doce's broker" in endpoints.endpoint_problem("http://127.0.0.1:6379", trusted=False)


def test_a_docker_daemon_over_tcp_is_a_service(rule, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    endpoints._services.cache_clear()
    assert "the Docker daemon" in endpoints.endpoint_problem("http://127.0.0.1:2375", trusted=True)


def test_a_service_on_another_host_closes_that_host_whole(rule, monkeypatch):
    """The compose stack's `db`: a sandbox's routes cannot tell its ports apart."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host in ("db", "db-alias.internal"):
            return real("172.30.0.5", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    _database(monkeypatch, "db")
    for url in ("http://db:8080/v1", "http://172.30.0.5:11434/v1", "http://db-alias.internal/"):
        assert "doce's database" in endpoints.endpoint_problem(url, trusted=True), url
    assert endpoints.endpoint_problem("http://172.30.0.6:11434/v1", trusted=True) == ""


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:11434/v1",
        "http://localhost:11434/v1",
        "http://[::1]:11434/v1",
        "http://10.0.0.5:8000/v1",
        "http://172.17.0.1:11434/v1",
        "http://192.168.1.20/v1",
        "http://100.64.0.1/v1",  # shared address space (carrier-grade NAT)
        "http://[fd12::1]:8000/v1",
        "http://host.docker.internal:11434/v1",  # the machine, seen from a container
    ],
)
def test_this_machine_and_private_networks_are_for_staff_or_the_operators_list(rule, url):
    problem = endpoints.endpoint_problem(url, trusted=False)
    assert "only administrators may use such an endpoint" in problem
    assert "DOCE_ENDPOINT_ALLOW" in problem
    assert endpoints.endpoint_problem(url, trusted=True) == ""


def test_the_machines_own_public_address_counts_as_the_machine(rule, monkeypatch):
    monkeypatch.setattr(endpoints, "machine_addresses", lambda: frozenset({"203.0.113.7"}))
    assert "only administrators" in endpoints.endpoint_problem(
        "http://203.0.113.7:11434", trusted=False
    )
    assert "doce's web server" in endpoints.endpoint_problem(
        "http://203.0.113.7:8000", trusted=True
    )


def test_a_name_is_judged_by_what_it_resolves_to(rule, monkeypatch):
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("127.0.0.1" if host == "sneaky.test" else host, *a, **k),
    )
    assert "doce's broker" in endpoints.endpoint_problem("http://sneaky.test:6379", trusted=True)
    assert "only administrators" in endpoints.endpoint_problem(
        "http://sneaky.test:11434", trusted=False
    )


@pytest.mark.parametrize(
    ("entry", "url", "allowed"),
    [
        ("127.0.0.1:11434", "http://127.0.0.1:11434/v1", True),
        ("127.0.0.1:11434", "http://localhost:11434/v1", True),
        ("localhost:11434", "http://[::1]:11434/v1", True),
        ("127.0.0.1:11434", "http://127.0.0.1:11435/v1", False),
        ("gpu-box.test:8000", "http://gpu-box.test:8000/v1", True),
        ("10.0.0.5:8000-8010", "http://10.0.0.5:8005/v1", True),
        ("10.0.0.5:8000-8010", "http://10.0.0.5:8011/v1", False),
        ("10.0.0.5:8000", "http://10.0.0.6:8000/v1", False),
    ],
)
def test_the_operators_list_opens_exactly_its_entries_for_everyone(rule, entry, url, allowed):
    rule.DOCE_ENDPOINT_ALLOW = [entry]
    assert (endpoints.endpoint_problem(url, trusted=False) == "") is allowed


@pytest.mark.parametrize(
    "url", ["https://api.example.test/v1", "https://8.8.8.8/v1", "http://[2001:4860::8888]/"]
)
def test_public_hosts_are_fine_for_everyone(rule, url, monkeypatch):
    real = socket.getaddrinfo
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, *a, **k: real("104.18.7.192" if host == "api.example.test" else host, *a, **k),
    )
    assert endpoints.endpoint_problem(url, trusted=False) == ""


def test_a_bad_allow_entry_stops_start_up(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="DOCE_ENDPOINT_ALLOW entry '127.0.0.1' is not"):
        settings_from(tmp_path, DEBUG="true", DOCE_ENDPOINT_ALLOW="127.0.0.1")


def test_server_ports_come_from_their_own_range(settings):
    from doce.opencode.runtimes.base import free_port

    settings.DOCE_SERVER_PORTS = range(24000, 24010)
    assert all(24000 <= free_port() < 24010 for _ in range(20))
