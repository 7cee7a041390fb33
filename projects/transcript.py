"""The conversation of a project as its page shows it, from doce's own copy
(projects.conversation), and what it tells us about the provider credential (a reply
carrying ProviderAuthError or APIError 401/403).

While the project's server runs, every read is a catch-up: the server's messages are
read and stored first, so the page shows what OpenCode has; once it is stopped, crashed
or replaced, the page shows the copy alone, the same way."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from django.utils import timezone

from doce.opencode import ProviderCredentialError, message_error
from projects import services
from projects.conversation import WINDOW, conversation_of
from projects.models import Message, Project
from projects.models import Part as StoredPart
from providers.models import ProviderConnection
from providers.selectors import connection_in_use
from providers.services import PROVIDER_NOT_CONFIGURED, connection_mark_error

logger = logging.getLogger(__name__)


@dataclass
class Part:
    id: str
    text: str
    # The part's full length in code points (the live stream appends from there); more
    # than ``text`` holds when doce kept only the start of a long part.
    length: int = 0
    cut: int = 0  # characters not kept

    def __post_init__(self) -> None:
        self.length = max(self.length, len(self.text))


@dataclass
class Activity:
    """What the agent did beside writing: a tool call, the files an edit changed."""

    kind: str
    tool: str = ""
    title: str = ""
    status: str = ""
    input: str = ""
    output: str = ""
    output_cut: int = 0
    files: list[str] = field(default_factory=list)
    text: str = ""


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
    activity: list[Activity] = field(default_factory=list)


@dataclass
class Transcript:
    entries: list[Entry] = field(default_factory=list)
    busy: bool = False
    unavailable: str = ""
    # The first reply that says the provider has no usable credential or rejected it.
    credential_error: ProviderCredentialError | None = None
    earlier: int = 0  # earlier messages kept but not shown
    whole: bool = False


def project_transcript(*, project: Project, whole: bool = False) -> Transcript:
    """The conversation (its latest messages; ``whole``: all of it), and, when a reply
    says the credential was missing or rejected, the project and its connection marked
    so (once)."""
    transcript = transcript_read(project=project, whole=whole)
    if transcript.credential_error is not None:
        _record_provider_failure(project, transcript.credential_error)
    return transcript


def conversation_catch_up(*, project: Project) -> tuple[str, ProviderCredentialError | None]:
    """Read the running server's messages into doce's copy. Returns why it could not
    ("" when it did) and the first credential error a reply carries."""
    problem, messages = services.conversation_sync(project=project)
    for message in messages:
        if message.get("info", {}).get("role") == "assistant":
            error = message_error(message)
            if isinstance(error, ProviderCredentialError):
                return problem, error
    return problem, None


def transcript_read(*, project: Project, whole: bool = False) -> Transcript:
    """The conversation from doce's copy, caught up first while the server runs."""
    problem, credential_error = conversation_catch_up(project=project)
    transcript = Transcript(credential_error=credential_error, whole=whole)
    if problem:
        transcript.unavailable = f"The conversation cannot be read right now: {problem}"
    messages, transcript.earlier = conversation_of(project, last=None if whole else WINDOW)
    for message in messages:
        transcript.entries.append(_entry(message))
    if not transcript.entries:
        transcript.entries.append(Entry(role="user", text=project.prompt))
    running = project.status == Project.Status.RUNNING and not problem
    if running:
        transcript.busy = any(not entry.done for entry in transcript.entries)
        # A prompt with no reply yet: OpenCode creates the assistant message a moment later.
        if transcript.entries[-1].role == "user":
            transcript.busy = True
    return transcript


def _entry(message: Message) -> Entry:
    parts, activity = [], []
    for part in message.parts.all():
        if part.kind == StoredPart.Kind.TEXT:
            parts.append(
                Part(
                    id=part.opencode_id,
                    text=part.text,
                    length=max(part.size, len(part.text)),
                    cut=max(0, part.size - len(part.text)),
                )
            )
        elif part.kind == StoredPart.Kind.TOOL:
            activity.append(
                Activity(
                    kind=part.kind,
                    tool=part.tool,
                    title=part.title,
                    status=part.status,
                    input=part.input,
                    output=part.output,
                    output_cut=max(0, part.output_size - len(part.output)),
                )
            )
        elif part.kind == StoredPart.Kind.PATCH:
            activity.append(Activity(kind=part.kind, files=list(part.files or [])))
        elif part.kind in (StoredPart.Kind.REASONING, StoredPart.Kind.FILE):
            activity.append(Activity(kind=part.kind, text=part.text))
    entry = Entry(
        role=message.role,
        text="".join(part.text for part in parts),
        id=message.opencode_id,
        parts=parts,
        activity=activity,
        error=message.error,
    )
    if message.role == Message.Role.ASSISTANT:
        entry.done = message.completed_at is not None or bool(message.error)
    return entry


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
    connection = connection_in_use(user=project.owner_id, provider_id=provider_id)
    if connection is not None and connection.status != ProviderConnection.Status.REVOKED:
        connection_mark_error(connection=connection, message=error.message, project_id=project.pk)
