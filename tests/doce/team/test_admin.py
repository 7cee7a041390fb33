"""The team's rows in the admin: invitations and members are listed and shown read-only,
an invitation's token hash never appears, and open invitations can be withdrawn."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from doce.team import services
from doce.team.models import Invitation, Member
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
INVITATIONS = reverse("admin:team_invitation_changelist")
MEMBERS = reverse("admin:team_member_changelist")


@pytest.fixture
def invitations(admin_user, alice):
    pending = services.invitation_create(created_by=admin_user, email="carol@example.test")
    used = services.invitation_create(created_by=admin_user, email="dave@example.test")
    Invitation.objects.filter(pk=used.invitation.pk).update(used_at=timezone.now(), used_by=alice)
    expired = services.invitation_create(created_by=admin_user, email="erin@example.test")
    Invitation.objects.filter(pk=expired.invitation.pk).update(
        expires_at=timezone.now() - timedelta(days=1)
    )
    return {"pending": pending, "used": used, "expired": expired}


def test_invitations_are_listed_without_their_token_or_hash(admin_client, invitations):
    html = admin_client.get(INVITATIONS).content.decode()
    for email in ("carol@example.test", "dave@example.test", "erin@example.test"):
        assert email in html
    for state in ("pending", "used", "expired"):
        assert f'<td class="field-state">{state}</td>' in html
    for made in invitations.values():
        made.invitation.refresh_from_db()
        assert made.token not in html and made.invitation.token_hash not in html
        page = admin_client.get(
            reverse("admin:team_invitation_change", args=[made.invitation.pk])
        ).content.decode()
        assert made.token not in page and made.invitation.token_hash not in page
        assert "token_hash" not in page and "Token hash" not in page
        assert 'name="email"' not in page  # read-only


def test_filter_by_state(admin_client, invitations):
    html = admin_client.get(INVITATIONS + "?state=pending").content.decode()
    assert "carol@example.test" in html
    assert "dave@example.test" not in html and "erin@example.test" not in html
    html = admin_client.get(INVITATIONS + "?state=expired").content.decode()
    assert "erin@example.test" in html and "carol@example.test" not in html


def test_invitations_are_made_on_the_team_page_not_here(admin_client, invitations):
    assert admin_client.get(reverse("admin:team_invitation_add")).status_code == 403
    pk = invitations["pending"].invitation.pk
    assert admin_client.get(reverse("admin:team_invitation_delete", args=[pk])).status_code == 403


def test_withdraw_leaves_used_invitations_alone(admin_client, invitations):
    pending, used = invitations["pending"].invitation, invitations["used"].invitation
    response = admin_client.post(
        INVITATIONS,
        {"action": "withdraw", "_selected_action": [pending.pk, used.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Withdrew 1 invitation(s)" in html and "1 had already been used" in html
    pending.refresh_from_db()
    used.refresh_from_db()
    assert pending.state == "revoked" and used.state == "used"
    with pytest.raises(services.InvitationUnusable):
        services.invitation_for_token(invitations["pending"].token)


def test_staff_without_the_permission_can_look_but_not_withdraw(client, invitations):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_invitation"))
    client.force_login(viewer)
    html = client.get(INVITATIONS).content.decode()
    assert "carol@example.test" in html and 'value="withdraw"' not in html
    pending = invitations["pending"].invitation
    client.post(INVITATIONS, {"action": "withdraw", "_selected_action": [pending.pk]})
    pending.refresh_from_db()
    assert pending.state == "pending"


def test_members_are_listed_read_only(admin_client):
    user = services.user_create_with_temporary_password(
        username="frank", email="frank@example.test", password="a-temporary-pass-123"
    )
    html = admin_client.get(MEMBERS).content.decode()
    assert "frank" in html
    member = Member.objects.get(user=user)
    page = admin_client.get(reverse("admin:team_member_change", args=[member.pk])).content.decode()
    assert "frank" in page and 'name="password_change_required"' not in page
    assert admin_client.get(reverse("admin:team_member_add")).status_code == 403
