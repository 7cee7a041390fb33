"""Projects and their pipeline jobs in the admin, with the operator's actions: retry a
failed pipeline, cancel queued work. The warm pool's servers, read-only. Everyone's usage
(read-only, with totals and a CSV) and the users' monthly budgets (docs/usage.md)."""

from django.contrib import admin, messages
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from doce.admin import ReadOnlyAdminMixin
from projects import services as project_services
from projects import usage, workspace
from projects.models import Budget, PooledServer, Project, Usage
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
        "preview",
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

    @admin.display(description="Site preview")
    def preview(self, obj):
        url = reverse("admin:projects_project_preview", args=[obj.pk])
        return format_html(
            '<a href="{}" target="_blank" rel="noopener noreferrer">Open the preview</a>', url
        )

    def get_urls(self):
        view = self.admin_site.admin_view(self.preview_view)
        return [
            path("<int:project_id>/preview/", view, name="projects_project_preview"),
            *super().get_urls(),
        ]

    def preview_view(self, request, project_id: int):
        """Staff open any project's preview: to its capability URL, on the preview's
        origin (the link is built here, with the host the admin was asked on)."""
        project = Project.objects.filter(pk=project_id).first()
        if project is None or not self.has_view_permission(request, project):
            raise Http404("No such project.")
        return redirect(workspace.preview_url(project=project, request=request))


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
class PooledServerAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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


USAGE_CSV_HEADER = [
    "date",
    "time",
    "user",
    "project",
    "provider",
    "model",
    "credential",
    *Usage.TOKEN_FIELDS,
    "cost",
    "priced",
]


@admin.register(Usage)
class UsageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """One row per reply of an agent, everyone's; the list's totals follow its filters."""

    list_display = (
        "created_at",
        "user",
        "project_name",
        "provider_id",
        "model_id",
        "credential",
        *Usage.TOKEN_FIELDS,
        "cost_shown",
    )
    list_filter = ("user", "provider_id", "model_id", "priced", "created_at")
    date_hierarchy = "created_at"
    search_fields = ("user__username", "project_name", "provider_id", "model_id")
    list_select_related = ("user",)
    actions = ["export_csv"]

    @admin.display(description="cost", ordering="cost")
    def cost_shown(self, obj: Usage) -> str:
        return f"${obj.cost:.4f}" if obj.priced else "no price"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:  # not a redirect or an action's answer
            response.context_data["usage_totals"] = usage.usage_totals(changelist.queryset)
        return response

    @admin.action(description="Export the selected usage as CSV")
    def export_csv(self, request, queryset):
        rows = queryset.select_related("user").order_by("created_at").iterator(chunk_size=2000)
        response = StreamingHttpResponse(
            usage.csv_lines(USAGE_CSV_HEADER, (_usage_csv_row(row) for row in rows)),
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = 'attachment; filename="doce-usage.csv"'
        return response


def _usage_csv_row(row: Usage) -> list:
    when = timezone.localtime(row.created_at)
    return [
        when.date().isoformat(),
        when.time().isoformat(timespec="seconds"),
        row.user.get_username(),
        row.project_name,
        row.provider_id,
        row.model_id,
        row.credential,
        *(getattr(row, name) for name in Usage.TOKEN_FIELDS),
        row.cost,
        "yes" if row.priced else "no",
    ]


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """A user's monthly budget, instead of the default (DOCE_BUDGET_TOKENS,
    DOCE_BUDGET_USD); an empty field: no bound of that kind. Also `manage.py set_budget`."""

    list_display = ("user", "tokens", "usd", "updated_at")
    search_fields = ("user__username",)
    autocomplete_fields = ("user",)
    list_select_related = ("user",)
    fields = ("user", "tokens", "usd")

    help_texts = {
        "tokens": "Tokens a month (every kind, cache reads included). Empty: no token bound.",
        "usd": "US dollars a month. Empty: no cost bound.",
    }

    def get_form(self, request, obj=None, **kwargs):
        return super().get_form(request, obj, help_texts=self.help_texts, **kwargs)
