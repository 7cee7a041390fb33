from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Prefetch, QuerySet

from projects.models import Project
from providers.access import ModelAccessRules, access_for
from providers.catalog import (
    FREE_PROVIDER_ID,
    catalog_entry,
    catalog_models_detailed,
    catalog_status,
    free_models,
)
from providers.legacy import LEGACY_PROVIDER_ID
from providers.organisations.selectors import organisation_models_for
from providers.selectors import (
    connection_in_use,
    connections_in_use,
    credential_label,
    custom_endpoints,
    legacy_keys_pending,
    usable_provider_ids,
    user_settings_for,
)
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


@dataclass(frozen=True)
class ModelOption:
    value: str  # "provider/model", what the form posts
    label: str  # "Claude Sonnet 4.6 · 200k context · $3 / $15 per M tokens"


@dataclass(frozen=True)
class ModelGroup:
    """One provider's models in the picker. ``options`` is empty when doce does not know
    the provider's models: the picker's "Other model" field takes any id for it."""

    provider_id: str
    label: str  # "OpenRouter — your key", "Gateway — team key: Acme", ...
    options: tuple[ModelOption, ...]


def model_choices(*, user, rules: ModelAccessRules | None = None) -> list[ModelGroup]:
    """The model picker's groups: the providers of the user's own connections, then of
    the team keys granted to them, then OpenCode Zen's free models while no Zen key is
    in use. Only what the user's model-access rules allow (``providers.access``): a
    provider they wholly refuse is left out. A custom endpoint lists its own models (with
    its price), any other provider the catalog's (with context size and price where the
    fetched catalog knows them). ``rules``: the user's, when the caller has them."""
    rules = access_for(user=user) if rules is None else rules
    organisations = organisation_models_for(user=user)
    usable = {
        p
        for p in usable_provider_ids(user=user, organisations=False)
        | {entry.provider_id for entry in organisations}
        if rules.allows_provider(p)
    }
    connections = {
        c.provider_id: c
        for c in connections_in_use(user=user)
        .filter(provider_id__in=usable)
        .only("pk", "user_id", "provider_id", "name", "base_url", "models", "prices")
    }
    custom = {p for p, c in connections.items() if c.is_custom}
    free = free_models() if FREE_PROVIDER_ID not in usable else {}
    with_free = bool(free) and rules.allows_provider(FREE_PROVIDER_ID)
    catalog_ids = (usable - custom) | ({FREE_PROVIDER_ID} if with_free else set())
    catalog = catalog_models_detailed(catalog_ids)

    def group(provider_id: str, label: str, entries) -> ModelGroup:
        options = tuple(
            ModelOption(f"{provider_id}/{model_id}", _model_label(name, details))
            for model_id, name, details in entries
            if rules.allows(provider_id, model_id)
        )
        return ModelGroup(provider_id, label, options)

    served = {entry.provider_id for entry in organisations} - set(connections)
    own: list[ModelGroup] = []
    team: list[ModelGroup] = []
    for provider_id in usable - served:
        connection = connections.get(provider_id)  # None: the legacy OpenRouter key
        if provider_id in custom:
            name = connection.name or provider_id
            price = _price_facts(connection.prices)
            entries = [(m, m, price) for m in connection.models or ()]
        else:
            name, entries = catalog.get(provider_id, (provider_id, []))
        if not entries or group(provider_id, "", entries).options:
            whose = credential_label(connection) or "your key"
            shared = connection is not None and connection.is_shared
            (team if shared else own).append(group(provider_id, f"{name} — {whose}", entries))
    groups = [*sorted(own, key=_by_label), *sorted(team, key=_by_label)]
    # An organisation's providers (providers.organisations), unless a connection in use
    # already serves that id (it comes first: connections_in_use).
    for entry in organisations:
        if entry.provider_id not in served or not rules.allows_provider(entry.provider_id):
            continue
        label = f"{entry.provider_name} — organisation: {entry.organisation_name}"
        organisation_group = group(entry.provider_id, label, [(m, n, {}) for m, n in entry.models])
        if organisation_group.options:
            groups.append(organisation_group)
    if with_free:
        name, entries = catalog.get(FREE_PROVIDER_ID, ("OpenCode Zen", []))
        entries = [
            (m, n, {**facts, "input": 0, "output": 0}) for m, n, facts in entries if m in free
        ]
        free_group = group(FREE_PROVIDER_ID, f"{name} — free models", entries)
        if free_group.options:
            groups.append(free_group)
    return groups


def _by_label(group: ModelGroup) -> str:
    return group.label.lower()


def _price_facts(prices: dict | None) -> dict[str, float]:
    """A custom endpoint's stored price (``{"input": "3", "output": "15"}``) as facts."""
    try:
        return {kind: float(prices[kind]) for kind in ("input", "output")} if prices else {}
    except (KeyError, TypeError, ValueError):
        return {}


def _model_label(name: str, facts: dict[str, float]) -> str:
    """Name · 200k context · $3 / $15 per M tokens: as much as is known."""
    parts = [name]
    context = facts.get("context")
    if context:
        parts.append(
            f"{context / 1_000_000:.3g}M context"
            if context >= 1_000_000
            else f"{round(context / 1000)}k context"
        )
    if "input" in facts and "output" in facts:
        if facts["input"] == facts["output"] == 0:
            parts.append("free")
        else:
            parts.append(f"${facts['input']:g} / ${facts['output']:g} per M tokens")
    return " · ".join(parts)


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
    other provider the models of the stored catalog, an organisation's provider the
    models its document lists (providers.organisations)."""
    endpoint = (
        custom_endpoints(user=user)
        .filter(provider_id=provider_id)
        .values_list("name", "models")
        .first()
    )
    if endpoint is not None:
        name, models = endpoint
        return OfferedModels(name or provider_id, frozenset(models or ()))
    declared = next(
        (e for e in organisation_models_for(user=user) if e.provider_id == provider_id), None
    )
    if declared is not None and connection_in_use(user=user, provider_id=provider_id) is None:
        models = frozenset(model_id for model_id, _name in declared.models)
        return OfferedModels(declared.provider_name, models or None)
    entry = catalog_entry(provider_id)
    # Unknown to the stored catalog (never fetched: the built-in list names a few models
    # per provider only; or a provider OpenCode added since the last fetch), or listed
    # without models: OpenCode may still know the model, so only the id rules apply.
    if entry is None or not entry.models or catalog_status().is_fallback:
        return OfferedModels(entry.name if entry else provider_id, None)
    return OfferedModels(entry.name, frozenset(model_id for model_id, _name in entry.models))


def project_credential(project: Project) -> str:
    """Whose key the project's model runs on, in words: "your key", "team key: <name>"
    (``providers.selectors.connections_in_use``, the one rule), OpenCode's free models,
    or "" when there is none (the project's status says what to do)."""
    provider_id = project.current_model_provider_id
    connection = connection_in_use(user=project.owner_id, provider_id=provider_id)
    if connection is not None:
        return credential_label(connection)
    for entry in organisation_models_for(user=project.owner_id):
        if entry.provider_id == provider_id:
            return f"organisation: {entry.organisation_name}"
    if (
        provider_id == LEGACY_PROVIDER_ID
        and legacy_keys_pending().filter(user_id=project.owner_id).exists()
    ):
        return "your key"
    if provider_id == FREE_PROVIDER_ID:
        return "OpenCode's free models (no key)"
    return ""
