"""/healthz without a worker: everything but the broker round trip is real here.

The round trip with a real worker is in tests/integration/test_celery_roundtrip.py.
"""

import pytest
from django.db import connection
from django.db.utils import OperationalError
from kombu import Connection

from doce import health
from doce.celery import app


@pytest.fixture
def quick_round_trip(monkeypatch):
    monkeypatch.setattr(health, "BROKER_ROUND_TRIP_TIMEOUT", 0.5)


@pytest.mark.django_db
def test_healthz_needs_no_login_and_reports_each_part(client, alice, quick_round_trip):
    response = client.get("/healthz")
    body = response.json()
    assert set(body) == {"status", "database", "broker", "opencode", "sandbox"}
    assert body["sandbox"] == {"ok": True, "enabled": True}
    assert body["database"]["ok"] is True
    assert body["opencode"] == {
        "ok": True,
        "path": body["opencode"]["path"],
        "version": "1.18.33",
    }
    # No worker runs in this test: the broker cannot round-trip a task.
    assert body["broker"]["ok"] is False
    assert "no worker answered" in body["broker"]["error"]
    assert response.status_code == 503
    assert body["status"] == "error"


@pytest.mark.django_db
def test_healthz_reports_a_missing_opencode_binary(client, settings, quick_round_trip):
    settings.DOCE_OPENCODE_BIN = "/nonexistent/opencode"
    body = client.get("/healthz").json()
    assert body["opencode"]["ok"] is False
    assert "binary not found" in body["opencode"]["error"]


@pytest.mark.django_db
def test_healthz_reports_the_sandbox_down_when_it_cannot_be_set_up(
    client, settings, quick_round_trip
):
    settings.DOCE_PASTA_BIN = "/nonexistent/pasta"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["sandbox"]["ok"] is False
    assert "pasta not found" in response.json()["sandbox"]["error"]
    assert "apt-get install bubblewrap passt" in response.json()["sandbox"]["error"]


@pytest.mark.django_db
def test_healthz_flags_a_sandbox_turned_off(client, settings, quick_round_trip):
    settings.DOCE_SANDBOX = "off"
    sandbox = client.get("/healthz").json()["sandbox"]
    assert sandbox["ok"] is True and sandbox["enabled"] is False
    assert "unsandboxed" in sandbox["warning"]


@pytest.mark.django_db
def test_the_admin_index_warns_while_the_sandbox_is_off(client, admin_user, settings):
    client.force_login(admin_user)
    assert b"data-sandbox-warning" not in client.get("/admin/").content
    settings.DOCE_SANDBOX = "off"
    page = client.get("/admin/").content.decode()
    assert "data-sandbox-warning" in page and "unsandboxed" in page


@pytest.mark.django_db
def test_healthz_reports_an_unreachable_broker(client, monkeypatch):
    # Nothing listens on port 9: the broker is "down".
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:9/0"))
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert "Error" in response.json()["broker"]["error"]


@pytest.mark.django_db
def test_healthz_reports_a_database_that_is_down(client, monkeypatch, quick_round_trip):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {
        "ok": False,
        "error": "OperationalError: connection refused",
    }


@pytest.mark.django_db
def test_healthz_is_ok_when_every_part_is(client, monkeypatch):
    monkeypatch.setitem(health.CHECKS, "broker", lambda: {"ok": True})
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


@pytest.mark.django_db
def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
