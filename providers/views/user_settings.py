"""The legacy-key migration and the preferences page."""

from __future__ import annotations

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from providers import services
from providers.catalog import FREE_PROVIDER_ID, catalog_models, catalog_names, free_models
from providers.forms import PreferencesForm
from providers.legacy import legacy_keys_migrate
from providers.models import ProviderConnection, UserSettings
from providers.selectors import usable_provider_ids
from providers.views.common import Status, form_data, list_url


# --- legacy key and preferences -----------------------------------------------------------
@require_POST
def legacy_migrate(request):
    outcomes = legacy_keys_migrate(
        user_ids=[request.user.pk], actor_name=request.user.get_username()
    )
    outcome = outcomes[0] if outcomes else None
    if outcome is None:
        messages.info(request, "There was no old key to migrate.")
    elif outcome.result == "undecryptable":
        messages.error(request, "Your old key cannot be decrypted: connect OpenRouter again.")
    else:
        messages.success(request, "Your OpenRouter key now is a provider connection.")
    return redirect(list_url())


def preferences(request):
    connections = list(
        ProviderConnection.objects.filter(user=request.user)
        .exclude(status=Status.REVOKED)
        .only("provider_id", "name", "base_url", "models", "user_id")
    )
    settings_row = UserSettings.objects.filter(user=request.user).first()
    ids = list(usable_provider_ids(user=request.user))
    names = catalog_names([*ids, FREE_PROVIDER_ID])
    known_models = catalog_models(ids)
    if FREE_PROVIDER_ID not in ids and (free := free_models()):
        ids.append(FREE_PROVIDER_ID)  # its free models need no key
        known_models[FREE_PROVIDER_ID] = list(free.items())
    providers, models = [], []
    for provider_id in sorted(ids):
        custom = next(
            (c for c in connections if c.provider_id == provider_id and c.is_custom), None
        )
        name = custom.name if custom else names.get(provider_id, provider_id)
        providers.append((provider_id, name))
        pairs = [(m, m) for m in custom.models] if custom else known_models.get(provider_id, [])
        models.append(
            (
                name,
                [
                    (f"{provider_id}/{m}", f"{label} ({m})" if label != m else m)
                    for m, label in pairs
                ],
            )
        )
    initial = {}
    if settings_row is not None:
        initial = {
            "preferred_provider_id": settings_row.preferred_provider_id,
            "default_model": settings_row.default_model,
        }
    form = PreferencesForm(form_data(request), providers=providers, models=models, initial=initial)
    if request.method == "POST" and form.is_valid():
        services.preferences_update(
            user=request.user,
            preferred_provider_id=form.cleaned_data["preferred_provider_id"],
            default_model=form.cleaned_data["default_model"],
        )
        messages.success(request, "Preferences saved.")
        return redirect("providers:preferences")
    return render(
        request,
        "providers/preferences.html",
        {"form": form, "has_providers": bool(providers)},
    )
