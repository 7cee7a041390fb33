"""Connections: the list, adding (provider, method, API key or custom endpoint), Test,
Disconnect."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from providers import selectors, services, validation
from providers.catalog import (
    catalog_entries,
    catalog_entry,
    catalog_names,
    catalog_status,
    free_models,
)
from providers.forms import (
    MOVED_ENDPOINT_SAVED,
    ApiKeyForm,
    CustomProviderForm,
    prompt_field_name,
)
from providers.models import OAuthFlow, ProviderConnection
from providers.oauth_guard import local_callback_methods
from providers.options import option_set
from providers.selectors import connection_for, connections_for_user, user_settings_for
from providers.views.common import (
    Status,
    add_service_errors,
    check_message,
    connection_or_404,
    done,
    form_data,
    legacy_pending,
    list_url,
    rate_limited,
    render_page,
    rows_for,
    secret_view,
)


# --- the list -----------------------------------------------------------------------------
def provider_list(request):
    """The user's connections, in a constant number of queries."""
    connections = list(connections_for_user(user=request.user))
    settings_row = user_settings_for(user=request.user)
    flows = list(
        OAuthFlow.objects.filter(
            user=request.user,
            state__in=OAuthFlow.ACTIVE_STATES,
            expires_at__gt=timezone.now(),
        ).only("pk", "provider_id", "state", "method_label", "expires_at", "user_id")
    )
    return render(
        request,
        "providers/provider_list.html",
        {
            "rows": rows_for(connections, owner=request.user),
            "flows": flows,
            "legacy_pending": legacy_pending(settings_row, connections),
            "preferences": settings_row,
            # Said on the empty list: a user can build sites before connecting anything.
            "free_models_offered": not connections and bool(free_models()),
            "team_keys": team_key_rows(user=request.user, own=connections),
        },
    )


# --- adding: pick a provider, pick a method -----------------------------------------------
def provider_add(request):
    query = request.GET.get("q", "")[:100]
    entries = catalog_entries(query=query)
    connected = set(
        ProviderConnection.objects.filter(user=request.user).values_list("provider_id", flat=True)
    )
    context = {
        "entries": entries,
        "query": query,
        "connected": connected,
        "catalog": catalog_status(),
    }
    return render_page(request, "providers/add.html", "providers/_picker.html", context)


def provider_methods(request, provider_id: str):
    entry = catalog_entry(provider_id)
    if entry is None:
        raise Http404("OpenCode does not know this provider.")
    connected = connection_for(user=request.user, provider_id=provider_id) is not None
    local = local_callback_methods(entry.id)  # sign-ins that need a browser on the host
    options = option_set(entry.id)
    context = {
        "entry": entry,
        "connected": connected,
        "local_methods": local,
        "api_method": options.method if options else "",
        "api_hint": (options.method_hint if options else "") or "paste an API key",
    }
    return render_page(request, "providers/methods.html", "providers/_methods.html", context)


# --- API keys -----------------------------------------------------------------------------
@secret_view()  # the key, and the secret options (providers.options)
def provider_api_key(request, provider_id: str):
    """Connect with an API key (and the provider's options), or change them."""
    connection = connection_for(user=request.user, provider_id=provider_id)
    entry = catalog_entry(provider_id)
    if connection is None and entry is None:
        raise Http404("OpenCode does not know this provider.")
    custom = connection is not None and connection.is_custom
    method = None if custom or entry is None else entry.api_method
    if entry is not None and not custom and method is None:
        raise Http404("This provider connects by signing in, not with an API key.")
    initial = {}
    if connection is not None and method is not None:
        initial = {
            prompt_field_name(p): (connection.metadata or {}).get(p.key, "") for p in method.prompts
        }
    options = None if custom else option_set(provider_id)
    form = ApiKeyForm(
        form_data(request),
        method=method,
        options=options,
        connection=connection,
        initial=initial,
    )
    name = (connection.name if custom else None) or (entry.name if entry else provider_id)
    if request.method == "POST" and form.is_valid() and not rate_limited(request, form):
        try:
            connection, created, check = services.connection_connect_api_key(
                user=request.user,
                provider_id=provider_id,
                api_key=form.cleaned_data.get("api_key") or "",
                metadata=form.metadata,
                options=form.options,
                secret_options=form.secret_options,
                actor=request.user,
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            saved = "Saved the settings" if options else "Saved the new key"
            messages.success(request, f"Connected {name}." if created else f"{saved} for {name}.")
            check_message(request, name, check)
            return done(request, list_url())
    context = {
        "form": form,
        "entry": entry,
        "name": name,
        "provider_id": provider_id,
        "connection": connection,
        "options": options,
        "checked": validation.has_check(
            provider_id, base_url=connection.base_url if custom else ""
        ),
    }
    return render_page(request, "providers/api_key.html", "providers/_api_key_form.html", context)


# --- custom OpenAI-compatible endpoints ---------------------------------------------------
@secret_view()  # the key and the header values
def provider_custom(request, provider_id: str | None = None):
    connection = None
    initial = {}
    if provider_id is not None:
        connection = connection_or_404(request, provider_id)
        if not connection.is_custom:
            raise Http404("Not a custom provider.")
        initial = {
            "provider_id": connection.provider_id,
            "name": connection.name,
            "base_url": connection.base_url,
            "models": "\n".join(connection.models or []),
            "price_input": (connection.prices or {}).get("input", ""),
            "price_output": (connection.prices or {}).get("output", ""),
        }
    form = CustomProviderForm(
        form_data(request), user=request.user, connection=connection, initial=initial
    )
    if request.method == "POST" and form.is_valid() and not rate_limited(request, form):
        data = form.cleaned_data
        if form.duplicate_of is not None:
            messages.success(request, f"Connected {data['name']}.")
            return done(request, list_url())
        try:
            connection, created, check = services.endpoint_save(
                user=request.user,
                connection=connection,
                provider_id=data["provider_id"],
                name=data["name"],
                base_url=data["base_url"],
                models=data["models"],
                api_key=data.get("api_key") or "",
                headers=form.headers,
                prices=form.prices,
                actor=request.user,
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(
                request, f"Connected {data['name']}." if created else f"Saved {data['name']}."
            )
            if form.endpoint_moved:
                messages.warning(request, f"{data['name']}: {MOVED_ENDPOINT_SAVED}")
            check_message(request, data["name"], check)
            return done(request, list_url())
    context = {"form": form, "connection": connection}
    return render_page(request, "providers/custom.html", "providers/_custom_form.html", context)


# --- test and disconnect ------------------------------------------------------------------
@require_POST
@secret_view("api_key")  # the stored key passes through the key check
def provider_test(request, provider_id: str):
    """Re-validate: local checks, then the provider's API for an API key."""
    connection = connection_or_404(request, provider_id)
    if not rate_limited(request):
        connection, check = services.connection_verify(connection=connection, actor=request.user)
        status = connection.effective_status
        if status == Status.CONNECTED and check is not None and check.outcome == "valid":
            messages.success(request, f"{provider_id}: the provider accepted the key.")
        elif status == Status.CONNECTED and not connection.error_message:
            messages.success(request, f"{provider_id}: the connection looks fine.")
        elif status == Status.CONNECTED:
            messages.warning(request, f"{provider_id}: {connection.error_message}")
        else:
            messages.error(
                request, f"{provider_id}: {connection.effective_error_message or status}."
            )
    if request.htmx:
        row = rows_for([connection], owner=request.user)[0]
        return render(request, "providers/_connection_row.html", {"row": row, "flash": True})
    return redirect(list_url())


def provider_disconnect(request, provider_id: str):
    """GET: the confirmation (a dialog with htmx); POST: disconnect."""
    connection = connection_for(user=request.user, provider_id=provider_id)
    if connection is None:
        if request.method == "POST" and selectors.recently_disconnected(request.user, provider_id):
            return done(request, list_url())  # a double submit: done by the first one
        raise Http404("No such provider connection.")
    if request.method == "POST":
        name = connection.name or catalog_names([provider_id]).get(provider_id, provider_id)
        services.connection_delete(connection=connection, actor=request.user)
        messages.success(request, f"Disconnected {name}.")
        return done(request, list_url())
    name = rows_for([connection], owner=request.user)[0].name
    context = {"connection": connection, "name": name}
    return render_page(
        request, "providers/disconnect.html", "providers/_disconnect_confirm.html", context
    )


@dataclass(frozen=True)
class TeamKeyRow:
    """A team key as its users see it: never its key or hint."""

    name: str
    provider_id: str
    provider_name: str
    status: str
    overridden: bool  # the user's own connection for the provider is used instead


def team_key_rows(*, user, own: list[ProviderConnection]) -> list[TeamKeyRow]:
    own_providers = {connection.provider_id for connection in own}
    keys = list(
        selectors.shared_connections_granted(user=user).defer(*ProviderConnection.SECRET_FIELDS)
    )
    names = catalog_names(connection.provider_id for connection in keys)
    rows = []
    for connection in keys:
        rows.append(
            TeamKeyRow(
                name=connection.name or connection.provider_id,
                provider_id=connection.provider_id,
                provider_name=names.get(connection.provider_id, connection.provider_id),
                status=connection.get_status_display(),
                overridden=connection.provider_id in own_providers,
            )
        )
    return rows
