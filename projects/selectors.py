from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from projects.models import Project
from providers.catalog import catalog_entry, catalog_models, catalog_status
from providers.models import UserSettings
from providers.selectors import custom_endpoints, usable_provider_ids
from queue_jobs.models import Job


def projects_for_user(*, user) -> QuerySet[Project]:
    return Project.objects.filter(owner=user).defer("server_password", "prompt")


def project_for_user(*, user, project_id: int) -> Project:
    """The user's project; Project.DoesNotExist (a 404) for anyone else's."""
    return Project.objects.prefetch_related(
        Prefetch("jobs", queryset=Job.objects.order_by("-created_at", "position"))
    ).get(owner=user, pk=project_id)


def model_suggestions(*, user, limit: int = 500) -> list[str]:
    """Models to offer in the picker: the user's default first, then the models of every
    provider the user can use (custom endpoints' own lists, the catalog for the rest)."""
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
    return list(dict.fromkeys(suggestions))[:limit]


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
