"""A custom endpoint's "Re-scan models": its list of models, read again from its
``/models`` (the edit form's model list stays editable by hand)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from providers import services
from providers.views.common import connection_or_404, rate_limited, secret_view


@require_POST
@secret_view()  # the stored key passes through the request to the endpoint
def provider_custom_rescan(request, provider_id: str):
    connection = connection_or_404(request, provider_id)
    if not connection.is_custom:
        raise Http404("Not a custom provider.")
    if not rate_limited(request):
        before = list(connection.models or [])
        connection, check = services.endpoint_rescan(connection=connection, actor=request.user)
        name = connection.name or provider_id
        if not check.models:
            reason = check.message or "its answer had no model ids"
            messages.error(
                request,
                f"{name}: the endpoint did not list its models ({reason}). "
                "The model list is unchanged.",
            )
        elif list(connection.models) != before:
            messages.success(request, f"{name}: {len(connection.models)} models found at /models.")
        else:
            messages.info(request, f"{name}: the endpoint lists the same {len(before)} models.")
    return redirect("providers:custom_edit", provider_id=provider_id)
