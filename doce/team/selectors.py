"""What the team page and the onboarding checklist read."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Prefetch, QuerySet
from django.utils import timezone

from doce.team.models import Invitation


def members() -> QuerySet:
    return (
        get_user_model()
        .objects.order_by("username")
        .prefetch_related(Prefetch("groups", queryset=Group.objects.order_by("name")))
    )


def groups() -> QuerySet[Group]:
    return Group.objects.order_by("name")


def pending_invitations() -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).select_related("created_by")


def user_count() -> int:
    return get_user_model().objects.count()
