"""First-run: send every request to /setup/ until the first account exists."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.shortcuts import redirect

_EXEMPT_PREFIXES = ("/setup/", "/healthz", "/static/")


class FirstRunSetupMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # A logged-in user proves an account exists; only anonymous requests ask the
        # database (one EXISTS query), so deleting every account brings /setup/ back.
        if (
            not request.user.is_authenticated
            and not request.path.startswith(_EXEMPT_PREFIXES)
            and not get_user_model().objects.exists()
        ):
            return redirect("setup")
        return self.get_response(request)
