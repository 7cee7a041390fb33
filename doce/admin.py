"""What every app's admin shares (``ReadOnlyAdminMixin``), and the server-slot ledger:
which OpenCode servers run or wait, read-only (doce.capacity owns every change)."""

from __future__ import annotations

from django.contrib import admin

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
