from django.urls import path

from providers import views

app_name = "providers"
# Mounted under /settings/. Literal paths first: a provider id never takes their names
# (forms.RESERVED_IDS).
urlpatterns = [
    path("providers/", views.provider_list, name="list"),
    path("providers/add/", views.provider_add, name="add"),
    path("providers/custom/", views.provider_custom, name="custom"),
    path("providers/custom/<str:provider_id>/edit/", views.provider_custom, name="custom_edit"),
    path(
        "providers/custom/<str:provider_id>/rescan/",
        views.provider_custom_rescan,
        name="custom_rescan",
    ),
    path("providers/legacy/migrate/", views.legacy_migrate, name="legacy_migrate"),
    path("providers/oauth/<uuid:flow_id>/", views.oauth_flow, name="oauth_flow"),
    path("providers/oauth/<uuid:flow_id>/code/", views.oauth_code, name="oauth_code"),
    path("providers/oauth/<uuid:flow_id>/cancel/", views.oauth_cancel, name="oauth_cancel"),
    path("providers/<str:provider_id>/", views.provider_methods, name="methods"),
    path("providers/<str:provider_id>/api-key/", views.provider_api_key, name="api_key"),
    path("providers/<str:provider_id>/oauth/", views.provider_oauth, name="oauth"),
    path("providers/<str:provider_id>/test/", views.provider_test, name="test"),
    path("providers/<str:provider_id>/disconnect/", views.provider_disconnect, name="disconnect"),
    path("preferences/", views.preferences, name="preferences"),
]
