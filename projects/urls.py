from django.urls import path

from projects import views, workspace_views

app_name = "projects"
urlpatterns = [
    path("", views.project_list, name="list"),
    path("new/", views.project_new, name="new"),
    path("<int:project_id>/", views.project_detail, name="detail"),
    path("<int:project_id>/status/", views.project_status_fragment, name="status"),
    path("<int:project_id>/transcript/", views.project_transcript_fragment, name="transcript"),
    path("<int:project_id>/stream/", views.project_stream, name="stream"),
    path("<int:project_id>/messages/", views.project_message, name="messages"),
    path("<int:project_id>/start/", views.project_start, name="start"),
    path("<int:project_id>/stop/", views.project_stop, name="stop"),
    path("<int:project_id>/delete/", views.project_delete, name="delete"),
    path("<int:project_id>/model/", views.project_model, name="model"),
    path(
        "<int:project_id>/preview/new-link/",
        workspace_views.preview_rotate,
        name="preview_rotate",
    ),
    path("<int:project_id>/preview/", views.project_preview_card, name="preview_card"),
    path("<int:project_id>/files/", workspace_views.file_list, name="files"),
    path(
        "<int:project_id>/files/download.zip",
        workspace_views.file_download,
        name="files_download",
    ),
    path("<int:project_id>/files/view/<path:path>", workspace_views.file_view, name="file_view"),
]
