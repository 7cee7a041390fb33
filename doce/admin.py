"""What every app's admin shares (``ReadOnlyAdminMixin``), the server-slot ledger (which
OpenCode servers run or wait, read-only: doce.capacity owns every change), and the users'
admin with a password-reset action."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import PasswordResetForm

from doce import capacity
from doce.models import ServerSlot


class ReadOnlyAdminMixin:
    """For a ``ModelAdmin`` of rows that the code writes and the admin only shows: no add,
    no change, no delete. Actions that do change something (cancel, refresh) ask for
    their own permission."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ServerSlot)
class ServerSlotAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("kind", "key", "owner", "state", "waiting_for", "created_at", "updated_at")
    list_filter = ("state", "kind")
    list_select_related = ("owner",)
    ordering = ("state", "created_at")

    def changelist_view(self, request, extra_context=None):
        usage = capacity.usage()
        title = (
            f"OpenCode servers: {usage.held} of {usage.limit} running, {usage.waiting} "
            f"waiting (at most {usage.per_user} projects per user)"
        )
        return super().changelist_view(request, {**(extra_context or {}), "title": title})


admin.site.site_header = "doce administration"
admin.site.site_title = "doce admin"
admin.site.index_title = "doce administration"


# --- users: staff set a password (Django's own form) or send a reset link ----------------
User = get_user_model()
if admin.site.is_registered(User):
    admin.site.unregister(User)


@admin.register(User)
class DoceUserAdmin(UserAdmin):
    """Django's user admin ("Change password" on a user sets one), plus an action that
    mails the selected users a link to set their own (EMAIL_URL; printed to the server's
    output by default)."""

    actions = ["send_password_reset"]

    @admin.action(description="Send a password reset link by email")
    def send_password_reset(self, request, queryset):
        sent, skipped = 0, []
        for user in queryset:
            form = PasswordResetForm({"email": user.email})
            if not user.email or not form.is_valid() or not user.has_usable_password():
                skipped.append(user.get_username())
                continue
            form.save(
                request=request,
                use_https=request.is_secure(),
                domain_override=None,
                email_template_name="registration/password_reset_email.html",
            )
            sent += 1
        if sent:
            self.message_user(request, f"Sent a password reset link to {sent} user(s).")
        if skipped:
            self.message_user(
                request,
                "No link for " + ", ".join(skipped) + ": no email address or no usable "
                "password (set one with “Change password” on the user's page).",
                messages.WARNING,
            )
