"""The owner's view of a project's workspace: a new preview link, the file list, the
read-only viewer and the zip download. On doce's own origin: nothing of the workspace
is rendered as HTML here (the viewer shows text, escaped); the site itself is shown
only by the preview server, on its own origin."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils.text import slugify
from django.views.decorators.http import require_POST

from doce import safe_files
from projects import selectors, workspace
from projects.models import Project


def _owned_project(request, project_id: int) -> Project:
    try:
        return selectors.project_for_user(user=request.user, project_id=project_id)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


@require_POST
def preview_rotate(request, project_id: int):
    project = _owned_project(request, project_id)
    workspace.preview_token_rotate(project=project)
    messages.success(request, "New preview link made: the old one shows nothing any more.")
    return redirect("projects:detail", project_id=project.pk)


def file_list(request, project_id: int):
    project = _owned_project(request, project_id)
    entries, more = workspace.workspace_files(project=project)
    context = {"project": project, "entries": entries, "more": more}
    context["limit"] = workspace.FILE_LIST_LIMIT
    return render(request, "projects/files.html", context)


def file_view(request, project_id: int, path: str):
    project = _owned_project(request, project_id)
    try:
        view = workspace.workspace_file_view(project=project, path=path)
    except safe_files.Unsafe:
        raise Http404("No such file.") from None
    return render(request, "projects/file_view.html", {"project": project, "file": view})


def file_download(request, project_id: int):
    project = _owned_project(request, project_id)
    response = StreamingHttpResponse(
        workspace.workspace_zip(project=project), content_type="application/zip"
    )
    name = slugify(project.name) or f"project-{project.pk}"
    response["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response
