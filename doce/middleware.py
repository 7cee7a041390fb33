"""First-run: send every request to /setup/ until the first account exists."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import redirect

_EXEMPT_PREFIXES = ("/setup/", "/healthz", "/static/")


class FirstRunSetupMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self._has_users = False  # once true it stays true for this process

    def __call__(self, request):
        if not self._has_users and not request.path.startswith(_EXEMPT_PREFIXES):
            self._has_users = get_user_model().objects.exists()
            if not self._has_users:
                return redirect("setup")
        return self.get_response(request)
