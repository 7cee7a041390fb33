"""What a project's server gets when an organisation serves its provider: OpenCode's own
``wellknown`` entry, under the organisation's URL, as ``opencode auth login <url>``
would have stored it (``doce.opencode.WellKnownCredential``).

Before handing it over doce fetches the document itself: the server fetches it again at
every instance build and, if that fails, answers 500 on every instance route until it
restarts. A document that cannot be fetched, or no longer declares the provider, is
``OrganisationUnavailable`` (a clear project error), never given to the server.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.base_user import AbstractBaseUser
from django.views.decorators.debug import sensitive_variables

from doce.opencode import WellKnownCredential
from providers.organisations.document import DocumentError
from providers.organisations.fetch import document_fetch
from providers.organisations.models import Organisation
from providers.organisations.selectors import organisation_serving
from providers.organisations.services import organisation_mark_failed, organisation_store


class OrganisationUnavailable(Exception):
    """The organisation serving the provider cannot be used now; ``str()`` says why,
    for the user. Not retryable: the document or the token must change first."""

    def __init__(self, provider_id: str, message: str) -> None:
        super().__init__(message)
        self.provider_id = provider_id


@dataclass(frozen=True)
class OrganisationCredential:
    organisation_id: int
    organisation_name: str
    credential: WellKnownCredential
    key_hint: str


@sensitive_variables()
def organisation_credential_for(
    *, user: AbstractBaseUser | int, provider_id: str
) -> OrganisationCredential | None:
    """The wellknown entry for a project of ``user`` on ``provider_id``, when an
    organisation the user has a token for declares it (None otherwise: the provider's
    own credential applies). The document is fetched first and stored again. Raises
    ``OrganisationUnavailable``."""
    serving = organisation_serving(user=user, provider_id=provider_id)
    if serving is None:
        return None
    organisation, _stored, token = serving
    name = organisation.display_name
    try:
        document = document_fetch(organisation.url, trusted=True)
    except DocumentError as exc:
        organisation_mark_failed(organisation=organisation, error=str(exc))
        raise OrganisationUnavailable(provider_id, _unavailable(organisation, str(exc))) from exc
    organisation_store(organisation=organisation, document=document)
    if document.provider(provider_id) is None:
        raise OrganisationUnavailable(
            provider_id, f"The organisation {name} no longer declares the provider {provider_id}."
        )
    if token.undecryptable:
        raise OrganisationUnavailable(
            provider_id,
            f"Your token for the organisation {name} cannot be decrypted: paste it again.",
        )
    return OrganisationCredential(
        organisation_id=organisation.pk,
        organisation_name=name,
        credential=WellKnownCredential(
            url=organisation.url, env=document.env_name, token=str(token.token)
        ),
        key_hint=token.key_hint,
    )


def _unavailable(organisation: Organisation, why: str) -> str:
    return (
        f"The document of the organisation {organisation.display_name} "
        f"({organisation.url}/.well-known/opencode) could not be fetched: {why}."
    )
