"""The organisations page: what each registered organisation declares, the command to
run on one's own machine, a form to paste its token (never shown back), disconnect."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_POST

from providers.organisations import selectors, services
from providers.organisations.forms import TokenForm
from providers.organisations.models import Organisation


def organisation_list(request, form: TokenForm | None = None, form_for: int | None = None):
    rows = selectors.organisations_for_page(user=request.user)
    return render(
        request,
        "organisations/list.html",
        {"rows": rows, "form": form, "form_for": form_for, "empty_form": TokenForm()},
        status=400 if form is not None else 200,
    )


@require_POST
@sensitive_post_parameters("token")
@sensitive_variables()
def organisation_token(request, organisation_id: int):
    organisation = get_object_or_404(Organisation, pk=organisation_id)
    form = TokenForm(request.POST)
    if form.is_valid():
        try:
            row = services.token_set(
                user=request.user, organisation=organisation, token=form.cleaned_data["token"]
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Connected to {organisation} (token {row.key_hint}).")
            return redirect("organisations:list")
    form.data = form.data.copy()
    form.data["token"] = ""  # never rendered back
    return organisation_list(request, form=form, form_for=organisation.pk)


@require_POST
def organisation_disconnect(request, organisation_id: int):
    organisation = get_object_or_404(Organisation, pk=organisation_id)
    if services.token_remove(user=request.user, organisation=organisation):
        messages.success(request, f"Disconnected from {organisation}.")
    return redirect("organisations:list")
