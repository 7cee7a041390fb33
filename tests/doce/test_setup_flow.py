import threading

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from doce.setup import SetupAlreadyDone, first_admin_create

User = get_user_model()
GOOD_PASSWORD = "a-long-unusual-passphrase-42"


@pytest.mark.django_db
def test_every_page_leads_to_setup_while_no_account_exists(client):
    for path in ("/", "/projects/", "/settings/providers/", "/accounts/login/"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"] == "/setup/"


@pytest.mark.django_db
def test_setup_page_shows_the_contract_fields(client):
    html = client.get("/setup/").content.decode()
    for field in ("username", "password1", "password2"):
        assert f'name="{field}"' in html


@pytest.mark.django_db
def test_mismatched_passwords_are_rejected_with_a_clear_message(client):
    response = client.post(
        "/setup/",
        {"username": "root", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD + "x"},
    )
    assert response.status_code == 200
    assert "didn’t match" in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("short1", "too short"),
        ("password1234", "too common"),
        ("83629174650912", "entirely numeric"),
        ("rootroot-admin", "too similar to the username"),
    ],
)
def test_weak_passwords_are_rejected(client, password, message):
    response = client.post(
        "/setup/", {"username": "rootroot-admin", "password1": password, "password2": password}
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.django_db
def test_empty_form_is_rejected(client):
    response = client.post("/setup/", {})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    assert not User.objects.exists()


@pytest.mark.django_db
def test_setup_creates_a_logged_in_superuser_then_disappears(client):
    response = client.post(
        "/setup/", {"username": "root", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
    )
    assert response.status_code == 302
    user = User.objects.get()
    assert (user.username, user.is_staff, user.is_superuser) == ("root", True, True)
    assert user.check_password(GOOD_PASSWORD)
    assert client.get("/projects/").status_code == 200  # logged in
    assert client.get("/setup/").status_code == 404
    assert (
        client.post(
            "/setup/", {"username": "evil", "password1": GOOD_PASSWORD, "password2": GOOD_PASSWORD}
        ).status_code
        == 404
    )
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_setup_is_gone_for_anonymous_visitors_once_an_account_exists(client, alice):
    assert client.get("/setup/").status_code == 404


@pytest.mark.django_db
def test_second_first_admin_is_refused(alice):
    with pytest.raises(SetupAlreadyDone):
        first_admin_create(username="mallory", password=GOOD_PASSWORD)


@pytest.mark.django_db(transaction=True)
def test_concurrent_setups_create_exactly_one_admin():
    barrier = threading.Barrier(4)
    outcomes = []

    def attempt(name):
        barrier.wait()
        try:
            first_admin_create(username=name, password=GOOD_PASSWORD)
            outcomes.append("created")
        except SetupAlreadyDone:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(f"admin{i}",)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "refused", "refused", "refused"]
    assert User.objects.count() == 1
