from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from doce import login_throttle


def home(request):
    return redirect("projects:list")


# --- login throttling (django-axes calls these; settings.py names them) -----------------


def login_throttle_username(request, credentials: dict | None = None) -> str:
    """The username axes counts failures under, kept apart from addresses.

    axes hashes a username and an address into the same key space by joining them, so a
    login attempt with the username "203.0.113.7" would count against that address, and
    "alice1" from 2.3.4.5 against "alice" from 12.3.4.5: the prefix with the name's length
    makes every (name, address) pair its own key.
    """
    if credentials:
        username = credentials.get("username")
    else:
        username = getattr(request, "POST", {}).get("username")
    username = str(username or "")
    return f"user:{len(username)}:{username}"


def login_client_address(request) -> str | None:
    """The client's address: REMOTE_ADDR, or behind DOCE_LOGIN_PROXY_COUNT trusted
    reverse proxies the entry the outermost one appended to X-Forwarded-For (entries
    further left are whatever the client sent, so they are never trusted). With the
    default 0 the header is ignored: any client could write it."""
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
    """The login page with the throttle said plainly (which limit, until when), answered
    with 429; for the admin's login too."""
    minutes = settings.DOCE_LOGIN_COOLOFF_MINUTES
    next_url = request.POST.get(REDIRECT_FIELD_NAME, "") or request.GET.get(REDIRECT_FIELD_NAME, "")
    if not next_url and request.path.startswith(reverse("admin:index")):
        next_url = reverse("admin:index")
    # Set by doce.login_throttle when this attempt was counted against a reached limit.
    throttled_by = getattr(request, "doce_throttled_by", None) or login_throttle.PAIR
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    form = AuthenticationForm(request, initial={"username": request.POST.get("username", "")})
    context = {
        "form": form,
        REDIRECT_FIELD_NAME: next_url,
        "locked_out": True,
        "throttled_by": throttled_by,
        "cooloff_minutes": minutes,
        # Every attempt during the lockout starts the wait again (axes' default).
        "retry_at": timezone.localtime(timezone.now() + timedelta(minutes=minutes)),
    }
    return render(request, "registration/login.html", context, status=429)
