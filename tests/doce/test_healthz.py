"""/healthz without a worker: everything but the broker round trip is real here.

The round trip with a real worker is in tests/integration/test_celery_roundtrip.py.
Anyone gets the status and one {"ok": ...} per component; staff users get the details.
"""

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.db.utils import OperationalError
from kombu import Connection

from doce import encrypted_fields, health
from doce.celery import app
from tests.factories import ProviderConnectionFactory, UserSettingsFactory

COMPONENTS = {"database", "broker", "opencode", "sandbox", "bounds", "keyring"}


@pytest.fixture
def quick_round_trip(monkeypatch):
    monkeypatch.setattr(health, "BROKER_ROUND_TRIP_TIMEOUT", 0.5)


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def broker_ok(monkeypatch):
    monkeypatch.setitem(health.CHECKS, "broker", lambda: {"ok": True})


@pytest.mark.django_db
@pytest.mark.parametrize("who", ["anonymous", "alice"])
def test_the_public_answer_says_only_what_is_up(client, alice, who, quick_round_trip):
    if who == "alice":  # logged in, not staff
        client.force_login(alice)
    response = client.get("/healthz")
    assert response.status_code == 503  # no worker: the broker cannot round-trip
    assert response.json() == {
        "status": "error",
        "database": {"ok": True},
        "broker": {"ok": False},
        "opencode": {"ok": True},
        "sandbox": {"ok": True},
        "bounds": {"ok": True},
        "keyring": {"ok": True},
    }
    assert "/" not in response.content.decode()  # no paths, no error text


@pytest.mark.django_db
def test_the_public_answer_is_ok_with_200_when_every_part_is(client, broker_ok):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", **{name: {"ok": True} for name in COMPONENTS}}


@pytest.mark.django_db
def test_the_public_answer_hides_why_a_part_is_down(client, settings, broker_ok):
    settings.DOCE_OPENCODE_BIN = "/nonexistent/opencode"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["opencode"] == {"ok": False}
    assert "nonexistent" not in response.content.decode()


@pytest.mark.django_db
def test_healthz_gives_staff_the_details_of_each_part(staff_client, quick_round_trip):
    response = staff_client.get("/healthz")
    body = response.json()
    assert set(body) == {"status", *COMPONENTS}
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
def test_healthz_reports_a_missing_opencode_binary(staff_client, settings, quick_round_trip):
    settings.DOCE_OPENCODE_BIN = "/nonexistent/opencode"
    body = staff_client.get("/healthz").json()
    assert body["opencode"]["ok"] is False
    assert "binary not found" in body["opencode"]["error"]


@pytest.mark.django_db
def test_healthz_reports_the_sandbox_down_when_it_cannot_be_set_up(
    staff_client, settings, quick_round_trip
):
    settings.DOCE_PASTA_BIN = "/nonexistent/pasta"
    response = staff_client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["sandbox"]["ok"] is False
    assert "pasta not found" in response.json()["sandbox"]["error"]
    assert "apt-get install bubblewrap passt" in response.json()["sandbox"]["error"]


@pytest.mark.django_db
def test_healthz_flags_a_sandbox_turned_off(staff_client, settings, quick_round_trip):
    settings.DOCE_SANDBOX = "off"
    sandbox = staff_client.get("/healthz").json()["sandbox"]
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
def test_healthz_reports_an_unreachable_broker(staff_client, monkeypatch):
    # Nothing listens on port 9: the broker is "down".
    monkeypatch.setattr(app, "connection_for_write", lambda: Connection("redis://127.0.0.1:9/0"))
    response = staff_client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert "Error" in response.json()["broker"]["error"]


@pytest.mark.django_db
def test_healthz_reports_a_database_that_is_down(staff_client, monkeypatch, quick_round_trip):
    class DownDatabase:
        vendor = connection.vendor

        def cursor(self):
            raise OperationalError("connection refused")

    monkeypatch.setattr(health, "connection", DownDatabase())
    response = staff_client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {
        "ok": False,
        "error": "OperationalError: connection refused",
    }


@pytest.mark.django_db
def test_healthz_answers_503_to_the_probe_while_the_database_is_down(
    client, monkeypatch, broker_ok
):
    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "error" and body["database"] == {"ok": False}


@pytest.mark.django_db
def test_healthz_is_ok_when_every_part_is(staff_client, broker_ok):
    response = staff_client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


# --- keyring: do the configured keys open the stored secrets? ----------------------------
@pytest.fixture
def other_key(settings):
    """Encrypt what the test creates with a key doce is not configured with."""
    configured = settings.DOCE_ENCRYPTION_KEYS

    def made_with_another_key(factory, **kwargs):
        settings.DOCE_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
        try:
            return factory(**kwargs)
        finally:
            settings.DOCE_ENCRYPTION_KEYS = configured

    return made_with_another_key


@pytest.mark.django_db
def test_the_keyring_is_ok_when_the_keys_open_what_is_stored(
    client, staff_client, project, broker_ok
):
    ProviderConnectionFactory.create_batch(2)
    UserSettingsFactory(openrouter_api_key="sk-or-v1-" + "a" * 40)
    keyring_part = staff_client.get("/healthz").json()["keyring"]
    # 2 API keys, 1 OpenRouter key, 1 project server password
    assert keyring_part == {"ok": True, "sampled": 4}


@pytest.mark.django_db
def test_the_keyring_is_ok_with_nothing_stored(staff_client, broker_ok):
    assert staff_client.get("/healthz").json()["keyring"] == {"ok": True, "sampled": 0}


@pytest.mark.django_db
def test_the_keyring_is_down_when_stored_values_were_made_with_another_key(
    client, admin_user, other_key, broker_ok
):
    ProviderConnectionFactory()
    other_key(ProviderConnectionFactory)
    other_key(UserSettingsFactory, openrouter_api_key="sk-or-v1-" + "b" * 40)

    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["status"] == "error"
    assert response.json()["keyring"] == {"ok": False}

    client.force_login(admin_user)
    assert client.get("/healthz").json()["keyring"] == {
        "ok": False,
        "error": "RuntimeError: 2 of 3 sampled values cannot be decrypted: is "
        "DOCE_ENCRYPTION_KEYS the key they were made with?",
    }


@pytest.mark.django_db
def test_the_keyring_is_ok_during_a_rotation(settings, other_key):
    old = Fernet.generate_key().decode()
    settings.DOCE_ENCRYPTION_KEYS = [old]
    ProviderConnectionFactory()
    settings.DOCE_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old]  # new key first
    assert health.check_keyring() == {"ok": True, "sampled": 1}


@pytest.mark.django_db
def test_the_keyring_check_is_bounded(django_assert_num_queries, other_key):
    for _ in range(30):
        other_key(ProviderConnectionFactory)
    models = len(list(encrypted_fields.encrypted_models()))
    undecryptable = r"^\d+ of \d+ sampled values cannot be decrypted"
    with django_assert_num_queries(models), pytest.raises(RuntimeError, match=undecryptable):
        health.check_keyring()
    with pytest.raises(RuntimeError) as failure:
        health.check_keyring()
    sampled = int(str(failure.value).split(" of ")[1].split()[0])
    assert 0 < sampled <= health.KEYRING_SAMPLE_ROWS


@pytest.mark.django_db
def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db
def test_healthz_answers_503_with_a_session_cookie_while_the_database_is_down(
    client, alice, monkeypatch, quick_round_trip
):
    """The first-run middleware must not ask the database who the user is first."""
    client.force_login(alice)

    def broken_cursor(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "cursor", broken_cursor)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == {"ok": False}
