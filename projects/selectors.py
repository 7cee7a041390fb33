from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from projects.models import Project
from providers.catalog import (
    FREE_PROVIDER_ID,
    catalog_entry,
    catalog_models,
    catalog_status,
    free_models,
)
from providers.models import UserSettings
from providers.selectors import custom_endpoints, usable_provider_ids, user_settings_for
from queue_jobs.models import Job


def projects_for_user(*, user) -> QuerySet[Project]:
    return Project.objects.filter(owner=user).defer("server_password", "prompt")


def project_for_user(*, user, project_id: int) -> Project:
    """The user's project; Project.DoesNotExist (a 404) for anyone else's."""
    return Project.objects.prefetch_related(
        Prefetch("jobs", queryset=Job.objects.order_by("-created_at", "position"))
    ).get(owner=user, pk=project_id)


def model_providers(*, user) -> set[str]:
    """Providers a project of ``user`` may use: the usable connections, and OpenCode Zen
    while its free models are offered (no key needed)."""
    providers = usable_provider_ids(user=user)
    if FREE_PROVIDER_ID not in providers and free_models():
        providers.add(FREE_PROVIDER_ID)
    return providers


def model_suggestions(*, user, limit: int = 500) -> list[str]:
    """Models to offer in the picker: the user's default first, then the models of every
    provider the user can use (custom endpoints' own lists, the catalog for the rest),
    then OpenCode Zen's free models when no Zen key is connected."""
    providers = usable_provider_ids(user=user)
    suggestions: list[str] = []
    default = UserSettings.objects.filter(user=user).values_list("default_model", flat=True).first()
    if default:
        suggestions.append(default)
    custom = dict(
        custom_endpoints(user=user)
        .filter(provider_id__in=providers)
        .values_list("provider_id", "models")
    )
    for provider_id, models in custom.items():
        suggestions.extend(f"{provider_id}/{model}" for model in models or [])
    for provider_id, models in sorted(catalog_models(providers - set(custom)).items()):
        suggestions.extend(f"{provider_id}/{model_id}" for model_id, _name in models)
    if FREE_PROVIDER_ID not in providers:
        suggestions.extend(f"{FREE_PROVIDER_ID}/{model_id}" for model_id in free_models())
    return list(dict.fromkeys(suggestions))[:limit]


def initial_model(*, user) -> str:
    """The model /projects/new/ starts with ("provider/model", or ""): the user's default
    model while its provider is usable; else the preferred provider's (a custom
    endpoint's first model, the catalog's default for the rest); else nothing."""
    row = user_settings_for(user=user)
    if row is None or not (row.default_model or row.preferred_provider_id):
        return ""
    usable = usable_provider_ids(user=user)
    # Without a Zen key, OpenCode Zen offers its free models only.
    free = free_models() if FREE_PROVIDER_ID not in usable else {}
    provider_id, _, model_id = row.default_model.partition("/")
    if provider_id in usable or (provider_id == FREE_PROVIDER_ID and model_id in free):
        return row.default_model
    preferred = row.preferred_provider_id
    if preferred not in usable and not (preferred == FREE_PROVIDER_ID and free):
        return ""
    models = (
        custom_endpoints(user=user)
        .filter(provider_id=preferred)
        .values_list("models", flat=True)
        .first()
    )
    if models:
        return f"{preferred}/{models[0]}"
    entry = catalog_entry(preferred)
    if entry is None:
        return ""
    if preferred not in usable:  # OpenCode Zen, keyless
        model = entry.default_model if entry.default_model in free else next(iter(free), "")
    else:
        model = entry.default_model or next((m for m, _ in entry.models), "")
    return f"{preferred}/{model}" if model else ""


@dataclass(frozen=True)
class OfferedModels:
    """The models a provider offers a user. ``model_ids`` is None when doce does not know
    them (the stored catalog has no entry for the provider), so any well-formed id goes."""

    provider_name: str
    model_ids: frozenset[str] | None

    def offers(self, model_id: str) -> bool:
        return self.model_ids is None or model_id in self.model_ids


def models_offered(*, user, provider_id: str) -> OfferedModels:
    """What ``provider_id`` offers ``user``: a custom endpoint its own model list, any
    other provider the models of the stored catalog."""
    endpoint = (
        custom_endpoints(user=user)
        .filter(provider_id=provider_id)
        .values_list("name", "models")
        .first()
    )
    if endpoint is not None:
        name, models = endpoint
        return OfferedModels(name or provider_id, frozenset(models or ()))
    entry = catalog_entry(provider_id)
    # Unknown to the stored catalog (never fetched: the built-in list names a few models
    # per provider only; or a provider OpenCode added since the last fetch), or listed
    # without models: OpenCode may still know the model, so only the id rules apply.
    if entry is None or not entry.models or catalog_status().is_fallback:
        return OfferedModels(entry.name if entry else provider_id, None)
    return OfferedModels(entry.name, frozenset(model_id for model_id, _name in entry.models))
