"""First-run: send every request to /setup/ until the first account exists; the login
requirement, with public views served before any session is read; the Permissions-Policy
header (the Content-Security-Policy comes from django-csp)."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.middleware import LoginRequiredMiddleware as _LoginRequired
from django.shortcuts import redirect

_EXEMPT_PREFIXES = ("/setup/", "/healthz", "/static/")


class FirstRunSetupMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # A logged-in user proves an account exists; only anonymous requests ask the
        # database (one EXISTS query), so deleting every account brings /setup/ back.
        # Exempt paths first: /healthz must answer (503) while the database is down,
        # also to a request that carries a session cookie.
        if (
            not request.path.startswith(_EXEMPT_PREFIXES)
            and not request.user.is_authenticated
            and not get_user_model().objects.exists()
        ):
            return redirect("setup")
        return self.get_response(request)


class LoginRequiredMiddleware(_LoginRequired):
    """Django's, except that a view marked ``login_not_required`` is served without
    first asking who the user is: /healthz must answer (503) while the database that
    holds the sessions is down."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        if not getattr(view_func, "login_required", True):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)


class PermissionsPolicyMiddleware:
    """``Permissions-Policy: DOCE_PERMISSIONS_POLICY`` on every answer: no doce page needs
    a camera, a microphone, a location or a payment, and neither may anything framed."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Permissions-Policy", settings.DOCE_PERMISSIONS_POLICY)
        return response
