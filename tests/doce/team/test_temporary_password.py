"""A user added with a temporary password must change it at first login."""

import pytest
from django.contrib.auth import get_user_model

from doce.team.models import Member

pytestmark = pytest.mark.django_db

TEMPORARY = "temporary-passphrase-913"
OWN = "my-own-passphrase-77-x"


def _add(staff_client, submission, **data):
    data = {
        "username": "dave",
        "email": "",
        "password": TEMPORARY,
        "submission": submission(staff_client, "data-add-user-form"),
        **data,
    }
    return staff_client.post("/team/users/", data)


def test_add_then_first_login_goes_to_password_change(client, staff_client, submission):
    response = _add(staff_client, submission)
    assert response.status_code == 302
    dave = get_user_model().objects.get(username="dave")
    assert Member.objects.get(user=dave).password_change_required

    client.logout()
    assert (
        client.post("/accounts/login/", {"username": "dave", "password": TEMPORARY}).status_code
        == 302
    )
    for path in ("/projects/", "/settings/providers/", "/team/"):
        response = client.get(path)
        assert response.status_code == 302 and response["Location"] == "/accounts/password_change/"
    page = client.get("/accounts/password_change/").content.decode()
    assert "data-password-temporary" in page

    response = client.post(
        "/accounts/password_change/",
        {"old_password": TEMPORARY, "new_password1": OWN, "new_password2": OWN},
    )
    assert response.status_code == 302
    assert client.get("/projects/").status_code == 200
    assert not Member.objects.get(user=dave).password_change_required

    client.logout()
    client.post("/accounts/login/", {"username": "dave", "password": OWN})
    assert client.get("/projects/").status_code == 200


def test_logout_stays_possible(client, staff_client, submission):
    _add(staff_client, submission)
    client.logout()
    client.post("/accounts/login/", {"username": "dave", "password": TEMPORARY})
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_taken_name_a_weak_password_and_a_double_submit_are_refused(
    staff_client, alice, submission
):
    response = _add(staff_client, submission, username="ALICE")
    assert response.status_code == 400 and "already exists" in response.content.decode()
    response = _add(staff_client, submission, password="dave")
    assert response.status_code == 400
    assert not get_user_model().objects.filter(username="dave").exists()

    data = {"username": "erin", "email": "", "password": TEMPORARY}
    data["submission"] = submission(staff_client, "data-add-user-form")
    assert staff_client.post("/team/users/", data).status_code == 302
    response = staff_client.post("/team/users/", {**data, "username": "erin2"})
    assert response.status_code == 400 and "already sent" in response.content.decode()
    assert not get_user_model().objects.filter(username="erin2").exists()


def test_a_normal_user_is_never_redirected(alice_client):
    assert alice_client.get("/projects/").status_code == 200
