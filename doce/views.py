from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme


def home(request):
    return redirect("projects:list")


# --- login throttling (django-axes calls these; settings.py names them) -----------------


def login_throttle_username(request, credentials: dict | None = None) -> str | None:
    """The username axes counts failures under, kept apart from addresses.

    axes hashes a username and an address into the same key space, so a login attempt
    with the username "203.0.113.7" would count against that address: the prefix stops
    anyone from locking out an address they do not use.
    """
    if credentials:
        username = credentials.get("username")
    else:
        username = getattr(request, "POST", {}).get("username")
    return None if username is None else f"user:{username}"


def login_client_address(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind DOCE_LOGIN_PROXY_COUNT reverse proxies
    the entry the outermost one appended to X-Forwarded-For (entries further left are
    whatever the client sent, so they are never trusted)."""
    proxies = settings.DOCE_LOGIN_PROXY_COUNT
    if proxies:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= proxies:
            return forwarded[-proxies]
    return request.META.get("REMOTE_ADDR")


def login_locked_out(request, original_response=None, credentials=None):
    """The login page with the lockout said plainly, answered with 429."""
    minutes = settings.DOCE_LOGIN_COOLOFF_MINUTES
    next_url = request.POST.get(REDIRECT_FIELD_NAME, "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    context = {
        "form": form,
        REDIRECT_FIELD_NAME: next_url,
        "locked_out": True,
        "cooloff_minutes": minutes,
        # Every attempt during the lockout starts the wait again (axes' default).
        "retry_at": timezone.localtime(timezone.now() + timedelta(minutes=minutes)),
    }
    return render(request, "registration/login.html", context, status=429)
