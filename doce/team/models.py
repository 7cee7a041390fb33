"""Invitations (a hashed single-use token with an expiry) and the flags doce keeps per
member (a temporary password to change, the onboarding checklist dismissed)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class Invitation(models.Model):
    """A link a staff member made: whoever opens it before ``expires_at`` picks a username
    and password, once. Only the token's SHA-256 is stored; the link is shown (and mailed)
    when it is made and never again."""

    token_hash = models.CharField(max_length=64, unique=True)
    email = models.EmailField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="invitations_sent",
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_by = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="invitation",
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"invitation {self.pk} ({self.state})"

    @property
    def state(self) -> str:
        if self.used_at:
            return "used"
        if self.revoked_at:
            return "revoked"
        if self.expires_at <= timezone.now():
            return "expired"
        return "pending"


class Member(models.Model):
    """What doce adds to a user: whether the password is a temporary one a staff member set
    (the user must change it before anything else), and whether they dismissed the
    onboarding checklist."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="member",
    )
    password_change_required = models.BooleanField(default=False)
    onboarding_dismissed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"member {self.user_id}"
