from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from doce import health, setup, views
from doce.team import views as team_views

urlpatterns = [
    path("", views.home, name="home"),
    path("setup/", setup.setup_view, name="setup"),
    path("healthz", health.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Django's own password views, in doce's templates (templates/registration/).
    path(
        "accounts/password_change/",
        team_views.PasswordChangeView.as_view(),
        name="password_change",
    ),
    path(
        "accounts/password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("accounts/password_reset/", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path(
        "accounts/password_reset/done/",
        auth_views.PasswordResetDoneView.as_view(),
        name="password_reset_done",
    ),
    path(
        "accounts/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path(
        "accounts/reset/done/",
        auth_views.PasswordResetCompleteView.as_view(),
        name="password_reset_complete",
    ),
    path("settings/organisations/", include("providers.organisations.urls")),
    path("settings/", include("providers.urls")),
    path("projects/", include("projects.urls")),
    path("usage/", include("projects.usage_urls")),
    path("team/", include("doce.team.urls")),
    path("admin/", admin.site.urls),
]
