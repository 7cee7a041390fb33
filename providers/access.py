"""Which models a user may pick: the staff's allow and deny rules (``ModelAccess``) of the
user and of the user's groups, read in one query.

- No allow rule: everything the user's credentials reach. With allow rules: only what
  one of them matches. A deny rule always wins.
- A pattern is a provider (``openrouter``: all its models), a model
  (``openrouter/anthropic/claude-sonnet-4``) or a prefix (``openrouter/anthropic/*``).

The rules are enforced where a model is chosen (``projects.forms.ModelField``) and in the
project's ``opencode.json`` (``opencode_limits_for``), so the agent cannot switch to
another model by itself. OpenCode 1.18.33 takes exact model ids in a provider's
``whitelist`` and ``blacklist`` (no wildcard: ``anthropic/*`` matches nothing), so a
prefix is written as the models doce knows under it (docs/providers.md, "Model access").
A rule change reaches running projects through ``access_changed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q

from doce.opencode.runtimes import ModelLimits
from providers.catalog import catalog_models
from providers.models import ModelAccess
from providers.selectors import connections_in_use, usable_provider_ids
from providers.signals import credential_changed, send_on_commit


@dataclass(frozen=True)
class Pattern:
    """One rule's pattern: ``model`` empty for a whole provider; ``prefix`` for ``x/*``."""

    provider_id: str
    model: str = ""
    prefix: bool = False

    @classmethod
    def parse(cls, pattern: str) -> Pattern:
        provider_id, _, model = pattern.strip().partition("/")
        if model.endswith("*"):
            return cls(provider_id, model[:-1], prefix=True)
        return cls(provider_id, model)

    def matches(self, provider_id: str, model_id: str) -> bool:
        if provider_id != self.provider_id:
            return False
        if not self.model:  # "openrouter" or "openrouter/*"
            return True
        return model_id.startswith(self.model) if self.prefix else model_id == self.model

    def __str__(self) -> str:
        return (
            f"{self.provider_id}/{self.model}*"
            if self.prefix
            else "/".join(part for part in (self.provider_id, self.model) if part)
        )


@dataclass(frozen=True)
class ModelAccessRules:
    """A user's rules, all groups' included. Empty: no limit."""

    allow: tuple[Pattern, ...] = ()
    deny: tuple[Pattern, ...] = ()

    @property
    def limited(self) -> bool:
        return bool(self.allow or self.deny)

    def allows(self, provider_id: str, model_id: str) -> bool:
        if any(rule.matches(provider_id, model_id) for rule in self.deny):
            return False
        return not self.allow or any(rule.matches(provider_id, model_id) for rule in self.allow)

    def allows_provider(self, provider_id: str) -> bool:
        """Whether some model of ``provider_id`` may be allowed (it is not wholly
        denied, and an allow rule names it when there are allow rules)."""
        if any(r.provider_id == provider_id and not r.model for r in self.deny):
            return False
        return not self.allow or any(r.provider_id == provider_id for r in self.allow)

    def problem(self, provider_id: str, model_id: str) -> str | None:
        """The form error for a model the rules refuse, or None."""
        if self.allows(provider_id, model_id):
            return None
        return (
            f"Your administrator does not let you use {provider_id}/{model_id}. Pick another model."
        )

    def opencode_limits(
        self, known_models: Mapping[str, Iterable[str]], *, model: str = ""
    ) -> ModelLimits:
        """What ``opencode.json`` says of these rules. ``known_models``: the model ids
        doce knows per provider (a custom endpoint's list, the catalog), against which
        a prefix is written out; ``model``: the project's own ``provider/model``, listed
        too when allowed (doce may not know it)."""
        if not self.limited:
            return ModelLimits()
        known = {provider_id: list(models) for provider_id, models in known_models.items()}
        own_provider, _, own_model = model.partition("/")
        if own_model and own_model not in known.get(own_provider, ()):
            known.setdefault(own_provider, []).append(own_model)
        disabled = sorted({r.provider_id for r in self.deny if not r.model})
        enabled = None
        if self.allow:
            enabled = tuple(sorted({r.provider_id for r in self.allow} - set(disabled)))
        whitelist: dict[str, tuple[str, ...]] = {}
        for provider_id in enabled or ():
            if any(r.provider_id == provider_id and not r.model for r in self.allow):
                continue  # the whole provider is allowed
            listed = [
                m
                for m in known.get(provider_id, ())
                if any(r.matches(provider_id, m) for r in self.allow)
            ]
            exact = [r.model for r in self.allow if r.provider_id == provider_id and not r.prefix]
            whitelist[provider_id] = tuple(
                m for m in dict.fromkeys([*exact, *listed]) if self.allows(provider_id, m)
            )
        blacklist: dict[str, tuple[str, ...]] = {}
        for provider_id in sorted({r.provider_id for r in self.deny if r.model} - set(disabled)):
            if enabled is not None and provider_id not in enabled:
                continue
            if provider_id in whitelist:
                continue  # the whitelist already leaves the denied models out
            exact = [r.model for r in self.deny if r.provider_id == provider_id and not r.prefix]
            listed = [
                m
                for m in known.get(provider_id, ())
                if any(r.matches(provider_id, m) for r in self.deny)
            ]
            blacklist[provider_id] = tuple(dict.fromkeys([*exact, *listed]))
        return ModelLimits(
            enabled_providers=enabled,
            disabled_providers=tuple(disabled),
            whitelist=whitelist,
            blacklist=blacklist,
        )


def rules_of(rows: Iterable[tuple[str, str]]) -> ModelAccessRules:
    """``(effect, pattern)`` rows as rules (repeats dropped)."""
    allow: dict[Pattern, None] = {}
    deny: dict[Pattern, None] = {}
    for effect, pattern in rows:
        (deny if effect == ModelAccess.Effect.DENY else allow)[Pattern.parse(pattern)] = None
    return ModelAccessRules(allow=tuple(allow), deny=tuple(deny))


def access_for(*, user: AbstractBaseUser | int) -> ModelAccessRules:
    """The rules of ``user``: their own and their groups' (one query)."""
    user_id = getattr(user, "pk", user)
    rows = (
        ModelAccess.objects.filter(Q(user_id=user_id) | Q(group__user__id=user_id))
        .values_list("effect", "pattern")
        .distinct()
    )
    return rules_of(rows)


def opencode_limits_for(*, user: AbstractBaseUser | int, model: str) -> ModelLimits:
    """The limits to write into the ``opencode.json`` of ``user``'s project on ``model``
    (none when the user has no rule). Models are known from the user's custom endpoints
    and the stored catalog."""
    rules = access_for(user=user)
    if not rules.limited:
        return ModelLimits()
    providers = {r.provider_id for r in (*rules.allow, *rules.deny) if r.model}
    known: dict[str, list[str]] = {}
    for provider_id, models in (
        connections_in_use(user=user)
        .filter(provider_id__in=providers)
        .exclude(base_url="")
        .values_list("provider_id", "models")
    ):
        known[provider_id] = list(models or ())
    for provider_id, models in catalog_models(providers - set(known)).items():
        known[provider_id] = [model_id for model_id, _name in models]
    return rules.opencode_limits(known, model=model)


def access_changed(*, user_ids: Iterable[int]) -> None:
    """After a rule of these users changed: their running projects get their
    ``opencode.json`` written again, after commit, by the re-injection a changed
    credential causes, for each provider they hold a credential of. A project on
    OpenCode Zen's keyless free models has no credential to re-inject: it gets the rules
    at its next start."""
    for user_id in set(user_ids):
        for provider_id in sorted(usable_provider_ids(user=user_id)):
            send_on_commit(credential_changed, user_id=user_id, provider_id=provider_id)
