"""Every change the team page makes: invitations (make, mail, accept, revoke), users with
a temporary password, active and staff switches, groups, the onboarding dismissal."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from doce.team.models import Invitation, Member

INVITATION_DAYS = 7
SESSION_FLAG = "doce_password_change_required"


class TeamError(Exception):
    """A change the team page refuses, with the reason in plain words."""


class InvitationUnusable(TeamError):
    def __init__(self, state: str):
        self.state = state
        super().__init__(
            {
                "used": "This invitation was already used.",
                "expired": "This invitation has expired.",
                "revoked": "This invitation was withdrawn.",
            }.get(state, "This invitation link is not valid.")
        )


@dataclass(frozen=True)
class NewInvitation:
    invitation: Invitation
    token: str


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def invitation_create(*, created_by, email: str = "", days: int = INVITATION_DAYS) -> NewInvitation:
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        token_hash=token_hash(token),
        email=email,
        created_by=created_by,
        expires_at=timezone.now() + timedelta(days=days),
    )
    return NewInvitation(invitation=invitation, token=token)


def invitation_send(*, invitation: Invitation, link: str, site: str) -> None:
    """Mail the link through EMAIL_URL (printed to the server's output by default)."""
    inviter = invitation.created_by.get_username() if invitation.created_by else "A colleague"
    expires = timezone.localtime(invitation.expires_at).strftime("%Y-%m-%d %H:%M")
    send_mail(
        subject=f"{inviter} invites you to doce",
        message=(
            f"{inviter} invites you to build websites with doce at {site}.\n\n"
            f"Open this link to choose your username and password (it works once, until "
            f"{expires}):\n\n{link}\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )


def invitation_for_token(token: str) -> Invitation:
    """The pending invitation behind ``token``; InvitationUnusable otherwise."""
    invitation = Invitation.objects.filter(token_hash=token_hash(token)).first()
    if invitation is None:
        raise InvitationUnusable("unknown")
    if invitation.state != "pending":
        raise InvitationUnusable(invitation.state)
    return invitation


def invitation_accept(*, token: str, username: str, password: str):
    """Create the invitee's account and spend the invitation, both or neither: of two
    submissions at once, one wins and the other is told the link was used."""
    user_model = get_user_model()
    with transaction.atomic():
        invitation = invitation_for_token(token)
        now = timezone.now()
        claimed = Invitation.objects.filter(
            pk=invitation.pk, used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=now
        ).update(used_at=now)
        if not claimed:
            raise InvitationUnusable(Invitation.objects.get(pk=invitation.pk).state)
        if user_model.objects.filter(username__iexact=username).exists():
            raise TeamError(f"The username “{username}” is taken; choose another.")
        user = user_model.objects.create_user(
            username=username, email=invitation.email, password=password
        )
        Invitation.objects.filter(pk=invitation.pk).update(used_by=user)
    return user


def invitation_revoke(*, invitation: Invitation) -> bool:
    return bool(
        Invitation.objects.filter(
            pk=invitation.pk, used_at__isnull=True, revoked_at__isnull=True
        ).update(revoked_at=timezone.now())
    )


def user_create_with_temporary_password(*, username: str, email: str, password: str):
    """A user whose first login leads straight to "change your password"."""
    user_model = get_user_model()
    try:
        with transaction.atomic():
            if user_model.objects.filter(username__iexact=username).exists():
                raise TeamError(f"A user named “{username}” already exists.")
            user = user_model.objects.create_user(username=username, email=email, password=password)
            Member.objects.create(user=user, password_change_required=True)
    except IntegrityError:
        raise TeamError(f"A user named “{username}” already exists.") from None
    return user


def _not_yourself(actor, user, what: str) -> None:
    if actor.pk == user.pk:
        raise TeamError(f"You cannot {what} yourself; ask another staff member.")


def user_set_active(*, actor, user, active: bool) -> None:
    _not_yourself(actor, user, "deactivate" if not active else "reactivate")
    if user.is_active != active:
        user.is_active = active
        user.save(update_fields=["is_active"])


def user_set_staff(*, actor, user, staff: bool) -> None:
    _not_yourself(actor, user, "change the staff status of")
    if user.is_staff != staff:
        user.is_staff = staff
        user.save(update_fields=["is_staff"])


def user_set_groups(*, user, groups) -> None:
    user.groups.set(groups)


def group_create(*, name: str) -> Group:
    name = name.strip()
    if not name:
        raise TeamError("A group needs a name.")
    if Group.objects.filter(name__iexact=name).exists():
        raise TeamError(f"A group named “{name}” already exists.")
    try:
        with transaction.atomic():
            return Group.objects.create(name=name)
    except IntegrityError:
        raise TeamError(f"A group named “{name}” already exists.") from None


def password_change_required(*, user) -> bool:
    return Member.objects.filter(user=user, password_change_required=True).exists()


def password_changed(*, user) -> None:
    Member.objects.filter(user=user, password_change_required=True).update(
        password_change_required=False
    )


def onboarding_dismiss(*, user) -> None:
    Member.objects.update_or_create(user=user, defaults={"onboarding_dismissed_at": timezone.now()})


def onboarding_dismissed(*, user) -> bool:
    return Member.objects.filter(user=user, onboarding_dismissed_at__isnull=False).exists()
