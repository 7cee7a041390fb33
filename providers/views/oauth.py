"""OAuth sign-ins: start (method and prompt inputs), the flow page, the pasted code,
Cancel. The flows themselves are in providers.oauth."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.http.request import split_domain_port
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from providers import oauth, selectors
from providers.catalog import CatalogEntry, catalog_entry, catalog_names
from providers.forms import OAuthStartForm
from providers.models import OAuthFlow
from providers.oauth_guard import OAuthLimit, is_loopback_host, local_callback
from providers.views.common import (
    done,
    flow_or_404,
    form_data,
    list_url,
    rate_limited,
    render_page,
    within,
)


# --- OAuth --------------------------------------------------------------------------------
def _oauth_entry(provider_id: str) -> CatalogEntry:
    entry = catalog_entry(provider_id)
    if entry is None or not entry.oauth_methods:
        raise Http404("This provider has no sign-in method.")
    return entry


def provider_oauth(request, provider_id: str):
    """GET: the chosen method's prompts; POST (``method`` + prompt inputs): start."""
    entry = _oauth_entry(provider_id)
    raw = request.POST.get("method") if request.method == "POST" else request.GET.get("method")
    try:
        method = entry.oauth_method(int(raw)) if raw not in (None, "") else entry.oauth_methods[0]
    except (TypeError, ValueError):
        method = None
    if method is None:
        if request.method != "POST":
            raise Http404("No such sign-in method.")
        method = entry.oauth_methods[0]
    form = OAuthStartForm(form_data(request), method=method, methods=entry.oauth_methods)
    if request.method == "POST" and form.is_valid():
        recent = selectors.recent_flow(request.user, entry.id, method.index, form.metadata)
        if recent is not None:  # a double submit: show the flow the first one started
            return done(request, reverse("providers:oauth_flow", args=[recent.pk]))
        if not rate_limited(request, form):
            try:
                flow = oauth.oauth_flow_start(
                    user=request.user,
                    entry=entry,
                    method=method,
                    inputs=form.metadata,
                    browser_on_host=browser_on_host(request),
                )
            except OAuthLimit as exc:
                form.add_error(None, str(exc))
            else:
                return done(request, reverse("providers:oauth_flow", args=[flow.pk]))
    context = {"entry": entry, "method": method, "form": form}
    return render_page(
        request, "providers/oauth_start.html", "providers/_oauth_start_form.html", context
    )


def browser_on_host(request) -> bool:
    """The browser runs on the doce host: it connected over loopback and asked for a
    loopback name (not through a proxy or a published port)."""
    host, _port = split_domain_port(request.get_host())
    return is_loopback_host(request.META.get("REMOTE_ADDR")) and is_loopback_host(host)


def _flow_context(flow: OAuthFlow, request=None) -> dict:
    """``request`` given: its user's view (staff also see a failure's technical detail)."""
    now = timezone.now()
    expired = flow.is_active and flow.expires_at <= now
    staff = request is not None and request.user.is_staff
    return {
        "failure_detail": oauth.flow_failure_detail(flow) if staff else "",
        "flow": flow,
        "name": catalog_names([flow.provider_id]).get(flow.provider_id, flow.provider_id),
        "expired": expired,
        "polling": flow.is_active
        and not expired
        and not (flow.state == OAuthFlow.State.PENDING and flow.kind == "code"),
        "expires_in": within(flow.expires_at, now),
        "local_callback": local_callback(flow.url) if flow.url else None,
    }


def oauth_flow(request, flow_id):
    flow = flow_or_404(request, flow_id)
    return render_page(
        request,
        "providers/oauth_flow.html",
        "providers/_oauth_flow.html",
        _flow_context(flow, request),
    )


@require_POST
@sensitive_post_parameters("code")
@sensitive_variables("code")
def oauth_code(request, flow_id):
    flow = flow_or_404(request, flow_id)
    code = (request.POST.get("code") or "").strip()
    flow_url = reverse("providers:oauth_flow", args=[flow.pk])
    problem = ""
    if not code:
        problem = "Paste the code the provider showed you."
    elif len(code) > 4096 or any(ord(char) < 32 or ord(char) == 127 for char in code):
        problem = "That does not look like a code: paste it again, on one line."
    if problem:
        context = _flow_context(flow, request) | {"code_error": problem}
        return render_page(
            request, "providers/oauth_flow.html", "providers/_oauth_flow.html", context
        )
    try:
        flow = oauth.oauth_flow_submit_code(flow=flow, code=code)
    except oauth.OAuthBusy:
        return done(request, flow_url)  # a double submit: the first request finishes it
    if flow.state == OAuthFlow.State.SUCCEEDED:
        messages.success(request, f"Connected {_flow_context(flow)['name']}.")
        return done(request, list_url())
    return done(request, flow_url)


@require_POST
def oauth_cancel(request, flow_id):
    flow = flow_or_404(request, flow_id)
    if oauth.oauth_flow_cancel(flow=flow):
        messages.info(request, "Sign-in cancelled.")
    return done(request, list_url())
