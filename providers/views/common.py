"""What the settings views share: rendering a page or its htmx fragment, the rows of the
connection list, the rate limit, messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import wraps

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.debug import SafeExceptionReporterFilter
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django_htmx.http import HttpResponseClientRedirect

from doce.endpoints import endpoint_problem
from doce.timefmt import ago
from providers import services, validation
from providers.catalog import catalog_names
from providers.models import OAuthFlow, ProviderConnection, UserSettings
from providers.ratelimit import RateLimited, attempt_register
from providers.selectors import connection_for

Status = ProviderConnection.Status
EXPIRY_WARNING = timedelta(hours=1)


# --- secrets in error reports -------------------------------------------------------------
class SecretsHiddenFilter(SafeExceptionReporterFilter):
    """Django's filter, active also with DEBUG=true: a debug error page is still a page,
    and a key pasted into a form must not show up on it (in POST data or in the local
    variables of the frames it passed through)."""

    def is_active(self, request) -> bool:
        return True


def hide_secrets(request) -> None:
    """Use ``SecretsHiddenFilter`` for error reports about this request."""
    request.exception_reporter_filter = SecretsHiddenFilter()


def secret_view(*post_parameters: str) -> Callable:
    """For a view a secret passes through: the POST parameters named (all when none)
    and the local variables of the view and of everything it calls (forms, services, the
    key check, httpx) are hidden from error reports, with DEBUG=true too."""

    def decorator(view):
        @sensitive_post_parameters(*post_parameters)
        @sensitive_variables()
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            hide_secrets(request)
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


# --- helpers ------------------------------------------------------------------------------
def connection_or_404(request, provider_id: str) -> ProviderConnection:
    connection = connection_for(user=request.user, provider_id=provider_id)
    if connection is None:
        raise Http404("No such provider connection.")
    return connection


def flow_or_404(request, flow_id) -> OAuthFlow:
    flow = OAuthFlow.objects.filter(user=request.user, pk=flow_id).first()
    if flow is None:
        raise Http404("No such sign-in.")
    return flow


def render_page(request, page: str, fragment: str, context: dict, status: int = 200):
    # Form errors answer 200, as Django's own views do: htmx swaps only 2xx answers.
    return render(request, fragment if request.htmx else page, context, status=status)


def form_data(request):
    """The form data of a POST (even an empty one: it gets "required" errors), else None."""
    return request.POST if request.method == "POST" else None


def done(request, url: str):
    """After a successful POST: a redirect, or an htmx client-side one."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def list_url() -> str:
    return reverse("providers:list")


def within(moment: datetime, now: datetime) -> str:
    seconds = max(0, int((moment - now).total_seconds()))
    return f"{max(1, seconds // 60)} min" if seconds < 3600 else f"{seconds // 3600} h"


@dataclass(frozen=True)
class Row:
    """A connection as the list shows it (never a secret: ``key_hint`` only)."""

    connection: ProviderConnection
    name: str
    status: str
    error_message: str
    last_used: str
    expiry_warning: str
    edit_url: str

    @property
    def not_verified(self) -> bool:
        return self.status == Status.CONNECTED and bool(self.error_message)

    @property
    def unchecked(self) -> bool:
        """Connected, but no provider has accepted this key: the check could not reach it
        (the note says why), or there is no check for it (or checks are off)."""
        return self.not_verified or (
            self.status == Status.CONNECTED
            and self.connection.auth_type == "api"
            and self.connection.last_validated_at is None
        )

    @property
    def label(self) -> str:
        """The one state the list shows: "Connected" only for a key the provider accepted
        (or an OAuth sign-in); never "Connected" beside "Not verified"."""
        return "Not checked" if self.unchecked else self.status[:1].upper() + self.status[1:]


def row_for(
    connection: ProviderConnection, name: str, now: datetime, *, trusted: bool | None = None
) -> Row:
    """``trusted``: the owner is staff (None: look it up when it matters)."""
    expiry = ""
    expires_at = connection.oauth_expires_at
    if connection.auth_type == "oauth" and expires_at and expires_at < now + EXPIRY_WARNING:
        # A passed expiry is not "expired": OpenCode refreshes the token (see
        # docs/oauth-tokens.md); a refresh that failed shows as status "expired".
        note = connection.oauth_expiry_note
        expiry = f"Token {note}." if note else ""
    if connection.is_custom:
        edit_url = reverse("providers:custom_edit", args=[connection.provider_id])
    elif connection.auth_type == "oauth":
        edit_url = reverse("providers:methods", args=[connection.provider_id])
    else:
        edit_url = reverse("providers:api_key", args=[connection.provider_id])
    status, error_message = connection.effective_status, connection.effective_error_message
    if connection.is_custom and status != Status.REVOKED:
        # A row saved before the rule (or around the form) that the rule refuses now.
        if trusted is None:
            trusted = connection.endpoint_trusted
        if refused := endpoint_problem(connection.base_url, trusted=trusted):
            status, error_message = Status.ERROR, f"{refused} Change its base URL."
    return Row(
        connection=connection,
        name=name or connection.name or connection.provider_id,
        status=status,
        error_message=error_message,
        last_used=ago(connection.last_used_at, now),
        expiry_warning=expiry,
        edit_url=edit_url,
    )


def rows_for(connections: list[ProviderConnection], *, owner) -> list[Row]:
    """The rows of ``owner``'s connections."""
    now = timezone.now()
    names = catalog_names(c.provider_id for c in connections if not c.is_custom)
    return [
        row_for(
            c,
            c.name if c.is_custom else names.get(c.provider_id, ""),
            now,
            trusted=owner.is_staff,
        )
        for c in connections
    ]


def legacy_pending(row: UserSettings | None, connections: list[ProviderConnection]) -> bool:
    """The legacy banner: an old OpenRouter key waits to be migrated (``row`` from
    ``user_settings_for``) and no openrouter connection has taken its place."""
    return (
        row is not None
        and row.legacy_pending
        and not any(c.provider_id == services.LEGACY_PROVIDER_ID for c in connections)
    )


def rate_limited(request, form=None) -> bool:
    try:
        attempt_register(user=request.user)
    except RateLimited as exc:
        if form is not None:
            form.add_error(None, str(exc))
        else:
            messages.error(request, str(exc))
        return True
    return False


def add_service_errors(form, error: ValidationError) -> None:
    for field, problems in error.message_dict.items():
        form.add_error(field if field in form.fields else None, problems)


def check_message(request, name: str, check: validation.KeyCheck | None) -> None:
    if check is not None and check.outcome == validation.UNVERIFIED:
        messages.warning(
            request,
            f"{name}: the key could not be checked ({check.message}). It is saved as not verified.",
        )
