"""Every write about organisations: staff register, refresh and remove one; a user sets
or removes their token. Audited in the providers' audit log (the token never: its hint
at most)."""

from __future__ import annotations

import logging

from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from providers.audit import audit_record
from providers.models import AuditEvent, key_hint
from providers.organisations.document import Document, DocumentError
from providers.organisations.fetch import document_fetch, url_normalise
from providers.organisations.models import Organisation, OrganisationToken
from providers.organisations.selectors import stored_document
from providers.signals import credential_changed, send_on_commit

logger = logging.getLogger(__name__)

Action = AuditEvent.Action

#: A token is what a command printed: one line of printable ASCII.
MAX_TOKEN_LENGTH = 16 * 1024
TOKEN_RULE = (
    "A token is one line of printable ASCII without spaces, quotes or backslashes: paste "
    "exactly what the command printed"
)


def organisation_add(
    *, url: str, name: str = "", created_by: AbstractBaseUser | None = None
) -> Organisation:
    """Register the organisation at ``url`` and fetch its document (a failed fetch is
    kept as ``fetch_error``: the organisation is registered, and shows why). Raises
    ``ValidationError`` for a URL that cannot be one, or is registered already."""
    try:
        url = url_normalise(url)
    except DocumentError as exc:
        raise ValidationError({"url": str(exc)}) from exc
    if Organisation.objects.filter(url=url).exists():
        raise ValidationError({"url": "This organisation is registered already."})
    organisation = Organisation.objects.create(
        url=url, name=(name or "").strip()[:100], created_by=created_by
    )
    audit_record(
        action=Action.CONNECTED, actor=created_by, detail={"organisation": url, "registered": True}
    )
    organisation_refresh(organisation=organisation)
    return organisation


def organisation_refresh(*, organisation: Organisation) -> Document | None:
    """Fetch the document again and keep it (or why it failed). The document (its
    providers, models and command) is replaced only by one that passes the rules."""
    try:
        document = document_fetch(organisation.url, trusted=True)
    except DocumentError as exc:
        organisation_mark_failed(organisation=organisation, error=str(exc))
        return None
    organisation_store(organisation=organisation, document=document)
    return document


def organisation_store(*, organisation: Organisation, document: Document) -> None:
    organisation.document = document.raw
    organisation.env_name = document.env_name
    organisation.auth_command = list(document.command)
    organisation.fetched_at = timezone.now()
    organisation.fetch_error = ""
    organisation.save(
        update_fields=["document", "env_name", "auth_command", "fetched_at", "fetch_error"]
    )


def organisation_mark_failed(*, organisation: Organisation, error: str) -> None:
    logger.info("organisation %s: its document was not fetched: %s", organisation.url, error)
    organisation.fetch_error = error[:500]
    organisation.fetched_at = timezone.now()
    organisation.save(update_fields=["fetch_error", "fetched_at"])


def organisation_remove(
    *, organisation: Organisation, actor: AbstractBaseUser | None = None
) -> None:
    """Forget the organisation and every user's token for it. Running projects keep
    what their server has until they restart (docs/providers.md)."""
    url = organisation.url
    organisation.delete()
    audit_record(
        action=Action.DISCONNECTED, actor=actor, detail={"organisation": url, "removed": True}
    )


@sensitive_variables("token")
def token_problem(token: str) -> str:
    """Why ``token`` cannot be the organisation's token ("" when it can). OpenCode puts
    it into the text of the document's config before parsing it, so a quote or a
    backslash would change that config."""
    if not token:
        return "Paste the token the command printed"
    if len(token) > MAX_TOKEN_LENGTH:
        return f"A token is at most {MAX_TOKEN_LENGTH} characters"
    if not token.isascii() or any(
        not char.isprintable() or char.isspace() or char in '"\\{}' for char in token
    ):
        return TOKEN_RULE
    return ""


@sensitive_variables("token")
def token_set(
    *, user: AbstractBaseUser, organisation: Organisation, token: str
) -> OrganisationToken:
    """Store ``user``'s token for ``organisation`` (encrypted; a new one replaces the
    old). Raises ``ValidationError``."""
    token = (token or "").strip()
    problem = token_problem(token)
    if problem:
        raise ValidationError({"token": problem + "."})
    with transaction.atomic():
        row, created = OrganisationToken.objects.select_for_update().get_or_create(
            user=user,
            organisation=organisation,
            defaults={"token": token, "key_hint": key_hint(token)},
        )
        if not created:
            row.token = token
            row.key_hint = key_hint(token)
            row.save(update_fields=["token", "key_hint", "updated_at"])
        audit_record(
            action=Action.CONNECTED if created else Action.UPDATED,
            user=user,
            actor=user,
            detail={"organisation": organisation.url, "key_hint": row.key_hint},
        )
        _changed(user=user, organisation=organisation)
    return row


def _changed(*, user: AbstractBaseUser, organisation: Organisation) -> None:
    """The user's running projects on the organisation's providers get the change (a
    re-injection each: the new entry, or, once disconnected, none)."""
    document = stored_document(organisation)
    for provider in document.providers if document else ():
        send_on_commit(credential_changed, user_id=user.pk, provider_id=provider.id)


def token_remove(*, user: AbstractBaseUser, organisation: Organisation) -> bool:
    """Forget ``user``'s token for ``organisation``; False when there was none."""
    deleted, _ = OrganisationToken.objects.filter(user=user, organisation=organisation).delete()
    if deleted:
        audit_record(
            action=Action.DISCONNECTED,
            user=user,
            actor=user,
            detail={"organisation": organisation.url},
        )
        _changed(user=user, organisation=organisation)
    return bool(deleted)


def token_mark_injected(
    *, user_id: int, organisation_id: int, provider_id: str, project_id: int | None
) -> None:
    """Record that a project's server got the user's organisation entry."""
    AuditEvent.objects.create(
        action=Action.INJECTED,
        user_id=user_id,
        provider_id=provider_id,
        project_id=project_id,
        detail={"source": "organisation", "organisation_id": organisation_id},
    )
