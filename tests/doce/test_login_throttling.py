"""Login throttling (django-axes, doce.login_throttle): per user name from one client
address, and a higher ceiling per client address; a stranger never locks a user out."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import RequestFactory
from django.utils import timezone

from doce import views
from tests.conftest import settings_from
from tests.factories import DEFAULT_PASSWORD

LOGIN = "/accounts/login/"


def attempt(client, username, password, address="127.0.0.1"):
    return client.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


@pytest.mark.django_db
def test_the_right_password_is_refused_once_an_account_is_locked_out(client, alice, settings):
    limit = settings.DOCE_LOGIN_FAILURE_LIMIT
    assert limit == 10 and settings.DOCE_LOGIN_COOLOFF_MINUTES == 15  # the defaults
    for _ in range(limit - 1):
        response = attempt(client, "alice", "wrong-password")
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.content.decode()

    locked = attempt(client, "alice", "wrong-password")
    assert locked.status_code == 429

    response = attempt(client, "alice", DEFAULT_PASSWORD)
    assert response.status_code == 429
    assert not logged_in(client)
    assert client.get("/projects/").status_code == 302  # still sent to the login page


@pytest.mark.django_db
def test_the_lockout_page_says_when_to_try_again(client, alice, settings):
    settings.DOCE_LOGIN_COOLOFF_MINUTES = 15
    for _ in range(settings.DOCE_LOGIN_FAILURE_LIMIT):
        response = attempt(client, "alice", "wrong-password")
    assert response.status_code == 429
    assert response.templates[0].name == "registration/login.html"
    page = " ".join(response.content.decode().split())
    assert "data-login-locked-out" in page
    assert "Too many failed login attempts for this account from your network address" in page
    assert "blocked for 15 minutes: try again after" in page
    assert "Other addresses are not affected" in page
    wait = response.context["retry_at"] - timezone.now()
    assert timedelta(minutes=14) < wait <= timedelta(minutes=15)
    assert 'name="username"' in page and 'value="alice"' in page  # the form is still there
    assert "Please enter a correct username" not in page


@pytest.mark.django_db
def test_a_password_storm_never_locks_the_real_user_out_elsewhere(client, alice, settings):
    # 30 wrong passwords for alice from one address...
    for _ in range(30):
        response = attempt(client, "alice", "wrong-password", address="198.51.100.7")
    assert response.status_code == 429
    # ...and alice logs in from another address at once.
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="203.0.113.9")
    assert response.status_code == 302
    assert logged_in(client)
    client.logout()
    # The guessing address stays throttled for alice, even with the right password.
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="198.51.100.7")
    assert response.status_code == 429
    assert response.context["throttled_by"] == "pair"
    assert not logged_in(client)


@pytest.mark.django_db
def test_failures_from_many_addresses_do_not_lock_the_account(client, alice, settings):
    for number in range(3 * settings.DOCE_LOGIN_FAILURE_LIMIT):
        attempt(client, "alice", "wrong-password", address=f"198.51.100.{number}")
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="203.0.113.9")
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_an_address_has_a_ceiling_whatever_accounts_it_tries(client, alice, bob, settings):
    settings.DOCE_LOGIN_ADDRESS_FAILURE_LIMIT = 25
    for number in range(24):  # under each account's limit, near the address's
        attempt(client, f"guess{number % 3}", "wrong-password", address="198.51.100.7")
    assert attempt(client, "bob", DEFAULT_PASSWORD, address="198.51.100.7").status_code == 302
    client.logout()
    assert attempt(client, "guess9", "wrong-password", address="198.51.100.7").status_code == 429
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="198.51.100.7")
    assert response.status_code == 429
    assert response.context["throttled_by"] == "address"
    page = " ".join(response.content.decode().split())
    assert "from your network address, for any account" in page
    assert not logged_in(client)
    # Another address is not affected.
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="203.0.113.9")
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_a_successful_login_does_not_reset_the_address_ceiling(client, alice, bob, settings):
    settings.DOCE_LOGIN_ADDRESS_FAILURE_LIMIT = 12
    for round_ in range(3):
        for number in range(4):
            attempt(client, f"guess{round_}{number}", "wrong-password", address="198.51.100.7")
        attempt(client, "bob", DEFAULT_PASSWORD, address="198.51.100.7")  # the attacker's own
        client.logout()
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="198.51.100.7")
    assert response.status_code == 429


@pytest.mark.django_db
def test_names_and_addresses_that_join_alike_are_counted_apart(client, alice, settings):
    # axes joins name and address into one key: "alice1" + "2.3.4.5" must not be "alice" +
    # "12.3.4.5".
    for _ in range(settings.DOCE_LOGIN_FAILURE_LIMIT):
        attempt(client, "alice1", "wrong-password", address="2.3.4.5")
    assert attempt(client, "alice", DEFAULT_PASSWORD, address="12.3.4.5").status_code == 302


@pytest.mark.django_db
def test_the_admin_login_is_throttled_the_same_way(client, admin_user, settings):
    for _ in range(settings.DOCE_LOGIN_FAILURE_LIMIT):
        response = client.post(
            "/admin/login/",
            {"username": "admin", "password": "wrong-password", "next": "/admin/"},
            REMOTE_ADDR="198.51.100.7",
        )
    assert response.status_code == 429
    assert "data-login-locked-out" in response.content.decode()
    assert response.context["next"] == "/admin/"
    # The administrator, from their own address, is not locked out.
    response = client.post(
        "/admin/login/",
        {"username": "admin", "password": DEFAULT_PASSWORD, "next": "/admin/"},
        REMOTE_ADDR="203.0.113.9",
    )
    assert response.status_code == 302 and logged_in(client)


@pytest.mark.django_db
def test_a_username_shaped_like_an_address_does_not_lock_that_address_out(client, alice, settings):
    # axes hashes usernames and addresses into one key space: without the "user:" prefix
    # these attempts would count against 127.0.0.1 itself.
    for number in range(settings.DOCE_LOGIN_FAILURE_LIMIT):
        attempt(client, "127.0.0.1", "wrong-password", address=f"198.51.100.{number}")
    response = attempt(client, "alice", DEFAULT_PASSWORD, address="127.0.0.1")
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_failures_below_the_limit_do_not_stop_the_right_password(client, alice, settings):
    for _ in range(settings.DOCE_LOGIN_FAILURE_LIMIT - 1):
        attempt(client, "alice", "wrong-password")
    assert attempt(client, "alice", DEFAULT_PASSWORD).status_code == 302
    assert logged_in(client)


@pytest.mark.django_db
def test_the_settings_drive_the_limit_and_the_cool_off(client, alice, settings):
    from axes.helpers import get_cache_timeout

    settings.AXES_FAILURE_LIMIT = settings.DOCE_LOGIN_FAILURE_LIMIT = 3
    assert get_cache_timeout() == 15 * 60  # counters expire this long after the last attempt
    for _ in range(2):
        assert attempt(client, "alice", "wrong-password").status_code == 200
    assert attempt(client, "alice", "wrong-password").status_code == 429


def test_behind_a_proxy_the_address_it_appended_counts(settings):
    request = RequestFactory().post(
        LOGIN,
        REMOTE_ADDR="172.18.0.1",
        HTTP_X_FORWARDED_FOR="10.9.9.9, 198.51.100.4",  # the first one is the client's claim
    )
    settings.DOCE_LOGIN_PROXY_COUNT = 0
    assert views.login_client_address(request) == "172.18.0.1"
    settings.DOCE_LOGIN_PROXY_COUNT = 1
    assert views.login_client_address(request) == "198.51.100.4"
    settings.DOCE_LOGIN_PROXY_COUNT = 2
    assert views.login_client_address(request) == "10.9.9.9"
    settings.DOCE_LOGIN_PROXY_COUNT = 3  # fewer entries than proxies: not forwarded
    assert views.login_client_address(request) == "172.18.0.1"


@pytest.mark.django_db
def test_first_run_setup_still_logs_the_first_admin_in(client):
    password = "a-long-and-unusual-passphrase-42"
    response = client.post(
        "/setup/", {"username": "root", "password1": password, "password2": password}
    )
    assert response.status_code == 302
    assert logged_in(client)


@pytest.mark.parametrize(
    "env",
    [
        {"DOCE_LOGIN_FAILURE_LIMIT": "0"},
        {"DOCE_LOGIN_COOLOFF_MINUTES": "0"},
        {"DOCE_LOGIN_PROXY_COUNT": "-1"},
        {"DOCE_LOGIN_ADDRESS_FAILURE_LIMIT": "5"},
    ],
)
def test_a_throttle_that_would_not_throttle_stops_start_up(tmp_path, env):
    with pytest.raises(ImproperlyConfigured, match="DOCE_LOGIN_FAILURE_LIMIT"):
        settings_from(tmp_path, DEBUG="true", **env)
