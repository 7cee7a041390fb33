from django.contrib import admin

from projects.models import Project
from queue_jobs.models import Job


class JobInline(admin.TabularInline):
    model = Job
    extra = 0
    can_delete = False
    fields = ("type", "state", "attempts", "last_error", "updated_at")
    readonly_fields = fields
    ordering = ("-created_at", "position")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ("id", "name", "owner", "status", "current_model_provider_id",
                    "current_model_id", "last_activity_at", "created_at")  # fmt: skip
    list_filter = ("status", "runtime", "current_model_provider_id")
    search_fields = ("name", "owner__username", "current_model_id")
    list_select_related = ("owner",)
    # The server password is an encrypted, non-editable field: never shown.
    readonly_fields = ("owner", "status", "runtime", "runtime_state", "data_dir",
                       "bootstrap_session_id", "initial_prompt_sent", "provider_credentials_set",
                       "error_kind", "error_message", "last_activity_at", "created_at",
                       "updated_at")  # fmt: skip
    fields = ("name", "prompt", "current_model_provider_id", "current_model_id", *readonly_fields)
    inlines = [JobInline]

    def has_add_permission(self, request):
        return False  # projects are created by their owners, with a pipeline
