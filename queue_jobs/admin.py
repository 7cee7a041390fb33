from django.contrib import admin, messages

from projects import services as project_services
from projects.models import Project
from queue_jobs.models import ACTIVE_STATES, Job, JobState
from queue_jobs.pipeline import PipelineBusy, jobs_cancel


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "project", "type", "state", "attempts", "max_attempts", "updated_at")
    list_filter = ("state", "type")
    search_fields = ("project__name", "project__owner__username", "last_error")
    list_select_related = ("project",)
    readonly_fields = [field.name for field in Job._meta.fields]
    actions = ["retry_pipeline", "cancel_jobs"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Retry: start the project's pipeline again")
    def retry_pipeline(self, request, queryset):
        started = 0
        for project_id in set(
            queryset.filter(state=JobState.FAILED).values_list("project_id", flat=True)
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
        for job in queryset.filter(state__in=ACTIVE_STATES).select_related("project"):
            cancelled += jobs_cancel(project=job.project, reason=f"cancelled by {request.user}")
        self.message_user(request, f"Cancelled {cancelled} job(s).")
