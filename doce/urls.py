from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from doce import health, setup, views

urlpatterns = [
    path("", views.home, name="home"),
    path("setup/", setup.setup_view, name="setup"),
    path("healthz", health.healthz, name="healthz"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("settings/", include("providers.urls")),
    path("projects/", include("projects.urls")),
    path("admin/", admin.site.urls),
]
