"""Invitation links: made by staff, shown once (and mailed when an address is given),
accepted once, before they expire; used, expired and withdrawn links say so."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from doce.team import services
from doce.team.models import Invitation

pytestmark = pytest.mark.django_db

PASSWORD = "a-long-unusual-passphrase-42"


def _invite(staff_client, submission, **data) -> str:
    data = {
        "email": "",
        "days": 7,
        "submission": submission(staff_client, "data-invite-form"),
        **data,
    }
    response = staff_client.post("/team/invite/", data, follow=True)
    html = response.content.decode()
    assert "data-invitation-link" in html
    start = html.index("http://testserver/team/invitations/accept/")
    return html[start : html.index('"', start)].removeprefix("http://testserver")


def test_an_invitation_link_is_shown_once_and_stores_only_a_hash(staff_client, submission):
    link = _invite(staff_client, submission)
    token = link.rstrip("/").rsplit("/", 1)[1]
    invitation = Invitation.objects.get()
    assert invitation.token_hash == services.token_hash(token)
    assert token not in invitation.token_hash
    assert "data-invitation-link" not in staff_client.get("/team/").content.decode()
    assert not mail.outbox  # no address given


def test_with_an_address_the_link_is_mailed(staff_client, submission):
    link = _invite(staff_client, submission, email="carol@example.test")
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["carol@example.test"]
    assert "http://testserver" + link in mail.outbox[0].body


def test_a_double_submit_makes_one_invitation(staff_client, submission):
    data = {"email": "", "days": 7, "submission": submission(staff_client, "data-invite-form")}
    assert staff_client.post("/team/invite/", data).status_code == 302
    response = staff_client.post("/team/invite/", data)
    assert response.status_code == 400
    assert "already sent" in response.content.decode()
    assert Invitation.objects.count() == 1


def test_bad_input_is_refused(staff_client, submission):
    data = {
        "email": "not-an-address",
        "days": 99,
        "submission": submission(staff_client, "data-invite-form"),
    }
    response = staff_client.post("/team/invite/", data)
    assert response.status_code == 400
    assert not Invitation.objects.exists()


def test_the_invitee_picks_a_name_and_password_and_is_logged_in(client, staff_client, submission):
    link = _invite(staff_client, submission, email="carol@example.test")
    client.logout()
    assert client.get(link).status_code == 200
    response = client.post(
        link, {"username": "carol", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 302
    carol = get_user_model().objects.get(username="carol")
    assert carol.email == "carol@example.test" and not carol.is_staff
    assert client.get("/projects/").wsgi_request.user == carol
    invitation = Invitation.objects.get()
    assert invitation.used_by == carol and invitation.used_at

    client.logout()
    response = client.get(link)
    assert response.status_code == 410
    assert "already used" in response.content.decode()
    response = client.post(link, {"username": "dave", "password1": PASSWORD, "password2": PASSWORD})
    assert response.status_code == 410
    assert not get_user_model().objects.filter(username="dave").exists()


def test_a_taken_username_or_weak_password_keeps_the_link_usable(client, alice, admin_user):
    new = services.invitation_create(created_by=admin_user)
    link = f"/team/invitations/accept/{new.token}/"
    response = client.post(
        link, {"username": "alice", "password1": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 200 and "already exists" in response.content.decode()
    response = client.post(link, {"username": "carol", "password1": "short", "password2": "short"})
    assert response.status_code == 200
    assert services.invitation_for_token(new.token).state == "pending"


def test_expired_unknown_and_withdrawn_links_say_so(client, staff_client, admin_user):
    new = services.invitation_create(created_by=admin_user)
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client.get(f"/team/invitations/accept/{new.token}/")
    assert response.status_code == 410 and "has expired" in response.content.decode()

    assert "not valid" in client.get("/team/invitations/accept/nope/").content.decode()

    other = services.invitation_create(created_by=admin_user)
    staff_client.post(f"/team/invitations/{other.invitation.pk}/revoke/")
    response = client.get(f"/team/invitations/accept/{other.token}/")
    assert response.status_code == 410 and "withdrawn" in response.content.decode()
    again = staff_client.post(f"/team/invitations/{other.invitation.pk}/revoke/", follow=True)
    assert "already used or withdrawn" in again.content.decode()


def test_the_claim_is_single_use_even_when_checked_twice(admin_user):
    new = services.invitation_create(created_by=admin_user)
    services.invitation_accept(token=new.token, username="carol", password=PASSWORD)
    with pytest.raises(services.InvitationUnusable):
        services.invitation_accept(token=new.token, username="dave", password=PASSWORD)
