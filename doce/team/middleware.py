"""A user who logged in with a temporary password goes to "change your password" before
any other page (logout, static files and the password views themselves excepted)."""

from __future__ import annotations

from django.shortcuts import redirect
from django.urls import reverse

from doce.team.services import SESSION_FLAG

# Never read the session for these: /healthz must answer while the database is down.
_EXEMPT_PREFIXES = ("/static/", "/healthz")


class PasswordChangeRequiredMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith(_EXEMPT_PREFIXES):
            session = getattr(request, "session", None)
            if session is not None and session.get(SESSION_FLAG):
                allowed = (
                    reverse("password_change"),
                    reverse("password_change_done"),
                    reverse("logout"),
                )
                if request.path not in allowed:
                    return redirect("password_change")
        return self.get_response(request)
