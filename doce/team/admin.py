"""The team's rows in the Django admin, read-mostly: invitations (never their token or its
hash: the link was shown once, on the team page, and a hash in a page helps nobody) with a
"Withdraw" action, and the flags doce keeps per member. Invitations and temporary
passwords are made on the team page (``/team/``), which shows the link once; the admin
only looks on and withdraws."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Q
from django.utils import timezone

from doce.admin import ReadOnlyAdminMixin
from doce.team import services
from doce.team.models import Invitation, Member


class InvitationStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [
            ("pending", "Pending"),
            ("used", "Used"),
            ("revoked", "Withdrawn"),
            ("expired", "Expired"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        open_ = Q(used_at__isnull=True, revoked_at__isnull=True)
        match self.value():
            case "pending":
                return queryset.filter(open_, expires_at__gt=now)
            case "used":
                return queryset.filter(used_at__isnull=False)
            case "revoked":
                return queryset.filter(used_at__isnull=True, revoked_at__isnull=False)
            case "expired":
                return queryset.filter(open_, expires_at__lte=now)
        return queryset


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    # ``token_hash`` is in no list, no form and no search: ``fields`` names what is shown.
    fields = (
        "state",
        "email",
        "created_by",
        "created_at",
        "expires_at",
        "used_by",
        "used_at",
        "revoked_at",
    )
    readonly_fields = fields
    list_display = (
        "__str__",
        "state",
        "email",
        "created_by",
        "created_at",
        "expires_at",
        "used_by",
    )
    list_filter = (InvitationStateFilter,)
    list_select_related = ("created_by", "used_by")
    search_fields = ("email", "created_by__username", "used_by__username")
    ordering = ("-created_at",)
    actions = ("withdraw",)

    @admin.display(description="state")
    def state(self, invitation: Invitation) -> str:
        return invitation.state

    def has_withdraw_permission(self, request) -> bool:
        return request.user.has_perm("team.change_invitation")

    @admin.action(description="Withdraw the selected invitations", permissions=["withdraw"])
    def withdraw(self, request, queryset) -> None:
        withdrawn = sum(services.invitation_revoke(invitation=inv) for inv in queryset)
        skipped = queryset.count() - withdrawn
        message = f"Withdrew {withdrawn} invitation(s)."
        if skipped:
            message += f" {skipped} had already been used or withdrawn and were left alone."
        self.message_user(request, message, messages.SUCCESS if withdrawn else messages.WARNING)


@admin.register(Member)
class MemberAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What doce adds to a user. Users themselves (active, staff, groups, passwords) are
    changed on the team page or in the users' admin."""

    fields = ("user", "password_change_required", "onboarding_dismissed_at")
    readonly_fields = fields
    list_display = fields
    list_filter = ("password_change_required",)
    list_select_related = ("user",)
    search_fields = ("user__username", "user__email")
    ordering = ("user__username",)
