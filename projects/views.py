from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib import messages
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from projects import budgets, selectors, services, stream, workspace
from projects.forms import MessageForm, ModelChangeForm, ProjectCreateForm
from projects.models import Project
from projects.onboarding import onboarding_checklist
from projects.transcript import project_transcript
from providers.services import PROVIDER_NOT_CONFIGURED
from queue_jobs.pipeline import PipelineBusy


def _project_or_404(request, project_id: int) -> Project:
    try:
        return selectors.project_for_user(user=request.user, project_id=project_id)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def project_list(request):
    projects = list(selectors.projects_for_user(user=request.user))
    checklist = onboarding_checklist(user=request.user, has_projects=bool(projects))
    return render(
        request, "projects/project_list.html", {"projects": projects, "checklist": checklist}
    )


def project_new(request):
    providers = selectors.model_providers(user=request.user)
    form = ProjectCreateForm(request.POST if request.method == "POST" else None, user=request.user)
    if request.method == "POST" and providers and form.is_valid():
        try:
            project = services.project_create(
                owner=request.user,
                prompt=form.cleaned_data["prompt"],
                model=form.cleaned_data["model"],
            )
        except budgets.BudgetExceeded as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("projects:detail", project_id=project.pk)
    return render(
        request,
        "projects/project_new.html",
        {
            "form": form,
            "has_providers": bool(providers),
        },
    )


def _detail_context(request, project: Project) -> dict:
    jobs = list(project.jobs.all())
    latest = jobs[0].pipeline if jobs else None
    steps = sorted((job for job in jobs if job.pipeline == latest), key=lambda job: job.position)
    return {
        "project": project,
        "steps": steps,
        "active": any(job.is_active for job in steps)
        or project.status
        in (Project.Status.STARTING, Project.Status.STOPPING, Project.Status.DELETING),
        "provider_auth_message": PROVIDER_NOT_CONFIGURED,
        "credential": selectors.project_credential(project),
    }


def project_detail(request, project_id: int):
    project = _project_or_404(request, project_id)
    context = _detail_context(request, project)
    context["transcript"] = project_transcript(project=project, whole=request.GET.get("all") == "1")
    # A refused message comes back as the draft (project_message), once.
    draft = request.session.pop(_draft_key(project.pk), "")
    context["message_form"] = MessageForm(initial={"text": draft})
    context["model_form"] = ModelChangeForm(user=request.user, initial={"model": project.model})
    context["budget"] = budgets.budget_state(user=request.user)
    context["preview_url"] = _preview_url(request, project)
    return render(request, "projects/project_detail.html", context)


def _preview_url(request, project: Project) -> str:
    """The preview's address once the workspace has a page to show ("" until then)."""
    if workspace.workspace_has_page(project):
        return workspace.preview_url(project=project, request=request)
    return ""


def project_preview_card(request, project_id: int):
    """The preview card alone (the page asks for it when the agent's files change)."""
    project = _project_or_404(request, project_id)
    return render(
        request,
        "projects/_preview.html",
        {"project": project, "preview_url": _preview_url(request, project)},
    )


def project_status_fragment(request, project_id: int):
    project = _project_or_404(request, project_id)
    return render(request, "projects/_status.html", _detail_context(request, project))


def project_transcript_fragment(request, project_id: int):
    project = _project_or_404(request, project_id)
    transcript = project_transcript(project=project, whole=request.GET.get("all") == "1")
    return render(
        request,
        "projects/_transcript.html",
        {
            "project": project,
            "transcript": transcript,
            "provider_auth_message": PROVIDER_NOT_CONFIGURED,
        },
    )


async def project_stream(request, project_id: int):
    """The live transcript, as server-sent events (projects.stream). It needs the ASGI
    server: under WSGI a stream would hold a thread, so the answer is 204, which tells
    EventSource to stop, and the page falls back to polling."""
    user = await request.auser()
    try:
        project = await sync_to_async(selectors.project_for_user)(user=user, project_id=project_id)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None
    if not isinstance(request, ASGIRequest):
        return HttpResponse(status=204)
    response = StreamingHttpResponse(
        stream.hub().events(project.pk), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def _draft_key(project_id: int) -> str:
    return f"project-draft-{project_id}"


@require_POST
def project_message(request, project_id: int):
    """Send a follow-up prompt. A message that is refused (empty, too long, the project
    stopped, the budget spent, the provider gone) is kept as the page's draft, so the
    page that says why still holds what the user typed."""
    project = _project_or_404(request, project_id)
    form = MessageForm(request.POST)
    error = ""
    if not form.is_valid():
        error = " ".join(form.errors.get("text", ["Write a message."]))
    else:
        try:
            services.message_send(project=project, text=form.cleaned_data["text"])
        except (services.ProjectNotRunning, budgets.BudgetExceeded) as exc:
            error = str(exc)
    if error:
        messages.error(request, error)
        request.session[_draft_key(project.pk)] = request.POST.get("text", "")
        if request.htmx:  # the fragment shows no messages and no draft: the page does
            response = HttpResponse(status=204)
            response["HX-Redirect"] = reverse("projects:detail", args=[project.pk])
            return response
    elif request.htmx:
        return project_transcript_fragment(request, project_id)
    return redirect("projects:detail", project_id=project.pk)


def _action(request, project_id: int, perform, done: str):
    project = _project_or_404(request, project_id)
    try:
        perform(project=project)
    except PipelineBusy:
        messages.warning(request, "That is already in progress.")
    else:
        messages.success(request, done)
    return redirect("projects:detail", project_id=project.pk)


@require_POST
def project_start(request, project_id: int):
    return _action(request, project_id, services.project_start, "Starting the project…")


@require_POST
def project_stop(request, project_id: int):
    return _action(request, project_id, services.project_stop, "Stopping the project…")


@require_POST
def project_delete(request, project_id: int):
    project = _project_or_404(request, project_id)
    try:
        services.project_delete(project=project)
    except PipelineBusy:
        messages.warning(request, "The project is already being deleted.")
    else:
        messages.success(request, f"Deleting “{project.name}”…")
    return redirect("projects:list")


@require_POST
def project_model(request, project_id: int):
    project = _project_or_404(request, project_id)
    form = ModelChangeForm(request.POST, user=request.user)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors["model"]))
    else:
        try:
            services.project_change_model(project=project, model=form.cleaned_data["model"])
        except PipelineBusy:
            messages.warning(request, "A credential update is already in progress.")
        else:
            messages.success(request, f"Model changed to {form.cleaned_data['model']}.")
    return redirect("projects:detail", project_id=project.pk)
