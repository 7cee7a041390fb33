"""The reads about organisations that the providers and projects share: which providers
and models a user has through an organisation (those with the user's token), which
organisation serves a provider, what a project's sandbox must reach for it.

A provider declared by several organisations the user has a token for is served by the
first one registered. Everything is read from the document last fetched (stored on the
organisation); the credential step fetches it again before a project uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser

from providers.organisations.document import Document, DocumentError, document_check
from providers.organisations.models import Organisation, OrganisationToken


@dataclass(frozen=True)
class OrganisationModels:
    """One provider an organisation declares, as the model picker lists it."""

    provider_id: str
    provider_name: str
    organisation_name: str
    models: tuple[tuple[str, str], ...]  # (model id, name)


def stored_document(organisation: Organisation) -> Document | None:
    """The organisation's last fetched document (None: never fetched, or no longer
    passing the rules)."""
    if not organisation.document:
        return None
    try:
        return document_check(organisation.document)
    except DocumentError:
        return None


def _connected(user: AbstractBaseUser | int) -> list[tuple[Organisation, Document]]:
    """The organisations ``user`` has a token for, with their stored documents, in the
    order they were registered."""
    user_id = getattr(user, "pk", user)
    organisations = Organisation.objects.filter(tokens__user_id=user_id).order_by("pk")
    found = []
    for organisation in organisations:
        document = stored_document(organisation)
        if document is not None:
            found.append((organisation, document))
    return found


def organisation_models_for(*, user: AbstractBaseUser | int) -> list[OrganisationModels]:
    """Every provider the user's organisations declare, with its models (a provider id
    that two organisations declare: the first one's)."""
    found: dict[str, OrganisationModels] = {}
    for organisation, document in _connected(user):
        for provider in document.providers:
            found.setdefault(
                provider.id,
                OrganisationModels(
                    provider_id=provider.id,
                    provider_name=provider.name,
                    organisation_name=organisation.display_name,
                    models=provider.models,
                ),
            )
    return list(found.values())


def organisation_provider_ids(*, user: AbstractBaseUser | int) -> set[str]:
    """The providers the user can run a project with through an organisation."""
    return {entry.provider_id for entry in organisation_models_for(user=user)}


def organisation_serving(
    *, user: AbstractBaseUser | int, provider_id: str
) -> tuple[Organisation, Document, OrganisationToken] | None:
    """The organisation whose document declares ``provider_id`` and for which ``user``
    has a token (its stored document, and the token row), or None."""
    user_id = getattr(user, "pk", user)
    for organisation, document in _connected(user_id):
        if document.provider(provider_id) is not None:
            token = OrganisationToken.objects.get(user_id=user_id, organisation=organisation)
            return organisation, document, token
    return None


def organisation_urls_for(*, user: AbstractBaseUser | int, provider_id: str) -> list[str]:
    """What the sandbox of a project on ``provider_id`` must reach when an organisation
    serves it: the organisation's URL (OpenCode fetches its document at every instance
    build) and the base URLs its document declares. Named by staff: trusted."""
    serving = organisation_serving(user=user, provider_id=provider_id)
    if serving is None:
        return []
    organisation, document, _token = serving
    return [organisation.url, *document.endpoints]


def organisations_for_page(*, user: AbstractBaseUser | int) -> list[dict]:
    """Every registered organisation with what it declares and the user's token row (or
    None), for the organisations page. Two queries."""
    user_id = getattr(user, "pk", user)
    tokens = {
        row.organisation_id: row
        for row in OrganisationToken.objects.filter(user_id=user_id).defer("token")
    }
    return [
        {
            "organisation": organisation,
            "document": stored_document(organisation),
            "token": tokens.get(organisation.pk),
        }
        for organisation in Organisation.objects.order_by("name", "url")
    ]
