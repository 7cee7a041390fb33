"""An organisation's entry in a project's server (providers.organisations): put it when
an organisation serves the project's provider, and take out the entries of any other.

OpenCode fetches ``<url>/.well-known/opencode`` for *every* ``wellknown`` entry of its
auth.json at every instance build, and answers 500 on every instance route when one
fails: an entry the project no longer needs (another model now, a token disconnected)
must not stay behind, so each put reads the server's auth.json (through its runtime, as
``projects.tokens`` does) and removes the other organisations' entries.
"""

from __future__ import annotations

import json
import logging

from doce.opencode import OpenCodeClient
from doce.opencode.runtimes import RuntimeState, get_runtime
from projects.models import Project
from providers.organisations.credentials import (
    OrganisationUnavailable,
    organisation_credential_for,
)
from providers.organisations.services import token_mark_injected
from providers.selectors import connection_in_use

logger = logging.getLogger(__name__)

__all__ = ["OrganisationUnavailable", "organisation_put"]


def organisation_put(client: OpenCodeClient, *, project: Project, provider_id: str) -> bool:
    """When an organisation serves ``provider_id`` for the owner: fetch its document
    (``OrganisationUnavailable`` when that fails: nothing is put), then ``PUT
    /auth/{url}`` its entry and say True. Otherwise False (the provider's own credential
    applies). Either way, other organisations' entries are removed from the server."""
    found = None
    # One rule (providers.selectors.connections_in_use): a connection of the user's own,
    # or a team key granted to them, comes before an organisation declaring the same id.
    if connection_in_use(user=project.owner_id, provider_id=provider_id) is None:
        found = organisation_credential_for(user=project.owner_id, provider_id=provider_id)
    keep = found.credential.url if found is not None else None
    for url in _wellknown_urls(project):
        if url != keep:
            client.remove_wellknown(url)
    if found is None:
        return False
    client.set_wellknown(found.credential)
    token_mark_injected(
        user_id=project.owner_id,
        organisation_id=found.organisation_id,
        provider_id=provider_id,
        project_id=project.pk,
    )
    return True


def _wellknown_urls(project: Project) -> list[str]:
    """The URLs of the ``wellknown`` entries in the project's auth.json (none when it
    cannot be read: a new server has none)."""
    if not project.runtime_state:
        return []
    state = RuntimeState.from_dict(project.runtime_state)
    raw = get_runtime(project.runtime or None).auth_file_read(state)
    if raw is None:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        logger.warning("project %s: its auth.json is not JSON", project.pk)
        return []
    if not isinstance(entries, dict):
        return []
    return [
        url
        for url, entry in entries.items()
        if isinstance(entry, dict)
        and entry.get("type") == "wellknown"
        and url.startswith(("https://", "http://"))
    ]
