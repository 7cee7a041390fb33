"""Projects and their pipeline jobs in the admin, with the operator's actions: retry a
failed pipeline, cancel queued work. The warm pool's servers, read-only."""

from django.contrib import admin, messages

from projects import services as project_services
from projects.models import PooledServer, Project
from queue_jobs.models import ACTIVE_STATES, Job, JobState
from queue_jobs.pipeline import PipelineBusy, jobs_cancel


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
    list_display = (
        "id",
        "name",
        "owner",
        "status",
        "current_model_provider_id",
        "current_model_id",
        "last_activity_at",
        "created_at",
    )
    list_filter = ("status", "runtime", "current_model_provider_id")
    search_fields = ("name", "owner__username", "current_model_id")
    list_select_related = ("owner",)
    # The server password is an encrypted, non-editable field: never shown.
    readonly_fields = (
        "owner",
        "status",
        "runtime",
        "runtime_state",
        "data_dir",
        "bootstrap_session_id",
        "initial_prompt_sent",
        "provider_credentials_set",
        "error_kind",
        "error_message",
        "last_activity_at",
        "created_at",
        "updated_at",
    )
    fields = ("name", "prompt", "current_model_provider_id", "current_model_id", *readonly_fields)
    inlines = [JobInline]

    def has_add_permission(self, request):
        return False  # projects are created by their owners, with a pipeline


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "type", "state", "attempts", "max_attempts", "updated_at")
    list_filter = ("state", "type")
    search_fields = ("subject__name", "subject__owner__username", "last_error")
    list_select_related = ("subject",)
    readonly_fields = [field.name for field in Job._meta.fields]
    actions = ["retry_pipeline", "cancel_jobs"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry: start the project's pipeline again")
    def retry_pipeline(self, request, queryset):
        started = 0
        for project_id in set(
            queryset.filter(state=JobState.FAILED).values_list("subject_id", flat=True)
        ):
            try:
                project_services.project_start(project=Project.objects.get(pk=project_id))
                started += 1
            except PipelineBusy:
                self.message_user(
                    request, f"Project {project_id} is already busy.", messages.WARNING
                )
        self.message_user(request, f"Restarted the pipeline of {started} project(s).")

    @admin.action(description="Cancel queued / retrying jobs")
    def cancel_jobs(self, request, queryset):
        cancelled = 0
        for job in queryset.filter(state__in=ACTIVE_STATES).select_related("subject"):
            cancelled += jobs_cancel(subject=job.subject, reason=f"cancelled by {request.user}")
        self.message_user(request, f"Cancelled {cancelled} job(s).")


@admin.register(PooledServer)
class PooledServerAdmin(admin.ModelAdmin):
    """The warm pool (projects.pool), read-only: the pool starts, claims and stops them.
    The server password is never shown."""

    list_display = ("key", "state", "runtime", "port", "pid", "created_at", "ready_at")
    list_filter = ("state", "runtime")
    fields = ("key", "state", "runtime", "runtime_state", "data_dir", "created_at", "ready_at")
    readonly_fields = fields

    @admin.display(description="port")
    def port(self, obj: PooledServer):
        return (obj.runtime_state or {}).get("port")

    @admin.display(description="pid")
    def pid(self, obj: PooledServer):
        return (obj.runtime_state or {}).get("pid")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False
