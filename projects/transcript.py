"""The conversation of a project, read from its OpenCode server, and what it tells us
about the provider credential (a reply carrying ProviderAuthError or APIError 401/403)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.utils import timezone

from doce.opencode import OpenCodeError, ProviderCredentialError, message_error
from projects import services
from projects.models import Project
from providers.models import ProviderConnection
from providers.selectors import connection_for
from providers.services import PROVIDER_NOT_CONFIGURED, connection_mark_error

logger = logging.getLogger(__name__)


@dataclass
class Part:
    id: str
    text: str


@dataclass
class Entry:
    role: str  # "user" | "assistant"
    text: str
    done: bool = True
    error: str = ""
    # The message's id and its text parts: the live stream (projects.stream) appends to
    # a part by id, from the part's current length in code points.
    id: str = ""
    parts: list[Part] = field(default_factory=list)


@dataclass
class Transcript:
    entries: list[Entry] = field(default_factory=list)
    busy: bool = False
    unavailable: str = ""
    # The first reply that says the provider has no usable credential or rejected it.
    credential_error: ProviderCredentialError | None = None


def project_transcript(*, project: Project) -> Transcript:
    """The conversation, and, when a reply says the credential was missing or rejected,
    the project and its connection marked so (once)."""
    transcript = transcript_read(project=project)
    if transcript.credential_error is not None:
        _record_provider_failure(project, transcript.credential_error)
    return transcript


def transcript_read(*, project: Project) -> Transcript:
    """The conversation as the project's server has it (reads only)."""
    if project.status != Project.Status.RUNNING or not project.bootstrap_session_id:
        return Transcript(entries=[Entry(role="user", text=project.prompt)])
    try:
        with services.project_client(project, timeout=5) as client:
            messages = client.messages(project.bootstrap_session_id)
    except (OpenCodeError, services.ProjectNotRunning) as exc:
        message = getattr(exc, "message", str(exc))
        return Transcript(
            entries=[Entry(role="user", text=project.prompt)],
            unavailable=f"The conversation cannot be read right now: {message}",
        )
    transcript = Transcript()
    for message in messages:
        info = message.get("info", {})
        parts = [
            Part(id=str(part.get("id", "")), text=part.get("text", ""))
            for part in message.get("parts", [])
            if part.get("type") == "text" and not part.get("synthetic")
        ]
        entry = Entry(
            role=info.get("role", "assistant"),
            text="".join(part.text for part in parts),
            id=str(info.get("id", "")),
            parts=parts,
        )
        if entry.role == "assistant":
            entry.done = bool(info.get("time", {}).get("completed"))
            error = message_error(message)
            if error is not None:
                entry.error = error.message
                entry.done = True
                if isinstance(error, ProviderCredentialError):
                    transcript.credential_error = transcript.credential_error or error
            transcript.busy = transcript.busy or not entry.done
        transcript.entries.append(entry)
    # A prompt with no reply yet: OpenCode creates the assistant message a moment later.
    if not transcript.entries or transcript.entries[-1].role == "user":
        transcript.busy = True
    return transcript


def _record_provider_failure(project: Project, error: ProviderCredentialError) -> None:
    """Mark the connection ``error`` and the project "Provider not configured or key
    rejected" (once: this runs at every poll)."""
    provider_id = error.provider_id or project.current_model_provider_id
    updated = (
        Project.objects.filter(pk=project.pk)
        .exclude(error_kind=Project.ErrorKind.PROVIDER_AUTH)
        .update(
            error_kind=Project.ErrorKind.PROVIDER_AUTH,
            error_message=f"{PROVIDER_NOT_CONFIGURED}: {error.message}"[:2000],
            updated_at=timezone.now(),
        )
    )
    if not updated:
        return
    project.error_kind = Project.ErrorKind.PROVIDER_AUTH
    connection = connection_for(user=project.owner_id, provider_id=provider_id)
    if connection is not None and connection.status != ProviderConnection.Status.REVOKED:
        connection_mark_error(connection=connection, message=error.message, project_id=project.pk)
