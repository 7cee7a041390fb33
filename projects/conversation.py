"""A project's conversation, kept by doce: every message of its sessions with its parts
(text, reasoning, tool calls with a bounded output, changed files, errors) and, for each
finished reply, what it cost (``Usage``).

OpenCode's own copy lives in the project's server and goes with it; doce mirrors it
whenever it reads the messages (``conversation_store``): at every catch-up read (the
page's transcript while the server runs, before a stop, the recorder after each reply
and after any gap in the event stream). The store is idempotent: a message that is
complete in doce's copy is never written again, so a catch-up costs writes only for
what changed.

Big texts are cut (``MAX_TEXT``, ``MAX_TOOL_OUTPUT``), and the full size is kept so the
page can say how much was left out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from doce.opencode import message_error
from projects.models import Message, Part, Project, Usage
from providers.audit import audit_record
from providers.models import AuditEvent
from providers.selectors import connection_in_use, credential_label

logger = logging.getLogger(__name__)

MAX_TEXT = 64 * 1024  # characters of a text or reasoning part
MAX_TOOL_INPUT = 4 * 1024
MAX_TOOL_OUTPUT = 16 * 1024
MAX_TITLE = 500
MAX_FILES = 200

_KINDS = {
    "text": Part.Kind.TEXT,
    "reasoning": Part.Kind.REASONING,
    "tool": Part.Kind.TOOL,
    "patch": Part.Kind.PATCH,
    "file": Part.Kind.FILE,
}
# Parts that carry nothing a reader needs (step markers, snapshots): not kept.
_SKIPPED = {"step-start", "step-finish", "snapshot", "agent", "compaction", "retry"}


def _moment(milliseconds: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(milliseconds) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _cut(text: Any, limit: int) -> tuple[str, int]:
    text = text if isinstance(text, str) else ""
    return text[:limit], len(text)


def _json(value: Any, limit: int) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    except (TypeError, ValueError):
        text = ""
    return text[:limit]


def _part_fields(part: dict[str, Any]) -> dict[str, Any] | None:
    """The columns of one OpenCode part, or None for a part that is not kept."""
    kind = part.get("type")
    if kind in _SKIPPED or not isinstance(kind, str):
        return None
    if kind == "text" and part.get("synthetic"):
        return None
    fields: dict[str, Any] = {"kind": _KINDS.get(kind, Part.Kind.OTHER)}
    if kind in ("text", "reasoning"):
        fields["text"], fields["size"] = _cut(part.get("text"), MAX_TEXT)
    elif kind == "tool":
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        output = state.get("output") if state.get("status") == "completed" else state.get("error")
        fields["output"], fields["output_size"] = _cut(output, MAX_TOOL_OUTPUT)
        fields.update(
            tool=str(part.get("tool") or "")[:100],
            status=str(state.get("status") or "")[:16],
            title=str(state.get("title") or "")[:MAX_TITLE],
            input=_json(state.get("input") or {}, MAX_TOOL_INPUT),
        )
    elif kind == "patch":
        files = part.get("files") if isinstance(part.get("files"), list) else []
        fields["files"] = [str(name)[:500] for name in files[:MAX_FILES]]
        fields["size"] = len(files)
    elif kind == "file":
        fields["text"] = str(part.get("filename") or part.get("url") or "")[:500]
    return fields


@dataclass(frozen=True)
class Stored:
    """What a store wrote: new or changed messages, and replies whose usage it recorded."""

    messages: int = 0
    usage: int = 0


def conversation_store(*, project: Project, messages: list[dict[str, Any]]) -> Stored:
    """Mirror ``messages`` (``GET /session/{id}/message``: ``[{"info", "parts"}]``) into
    doce's copy of the project's conversation. Messages complete in the copy are
    skipped; the rest are written with their parts; a reply that finished gets its
    ``Usage`` row (once)."""
    # The project's whole copy, a few columns a row: no IN list as long as a session.
    known = {
        row.opencode_id: row
        for row in Message.objects.filter(project=project)
        .only("id", "opencode_id", "role", "completed_at", "error")
        .annotate(has_parts=Exists(Part.objects.filter(message=OuterRef("pk"))))
    }
    written = usage = 0
    for message in messages:
        info = message.get("info")
        if not isinstance(info, dict) or not info.get("id"):
            continue
        row = known.get(str(info["id"]))
        # A prompt is complete once its parts are kept: OpenCode creates the message a
        # moment before its text, and a read in between saw none.
        user_done = row is not None and row.role == Message.Role.USER and row.has_parts
        if row is not None and (user_done or row.completed_at or row.error):
            continue  # complete in the copy: nothing of it changes any more
        with transaction.atomic():
            row = _message_write(project, info, message, row)
            _parts_write(row, message.get("parts") or [])
        written += 1
        if row.role == Message.Role.ASSISTANT and row.completed_at is not None:
            usage += _usage_record(project, info)
    return Stored(messages=written, usage=usage)


def _message_write(
    project: Project, info: dict[str, Any], message: dict[str, Any], row: Message | None
) -> Message:
    role = Message.Role.USER if info.get("role") == "user" else Message.Role.ASSISTANT
    times = info.get("time") if isinstance(info.get("time"), dict) else {}
    model = info.get("model") if isinstance(info.get("model"), dict) else {}
    error = message_error(message) if role == Message.Role.ASSISTANT else None
    values = {
        "session_id": str(info.get("sessionID") or "")[:100],
        "role": role,
        "provider_id": str(info.get("providerID") or model.get("providerID") or "")[:100],
        "model_id": str(info.get("modelID") or model.get("modelID") or "")[:255],
        "created_at": _moment(times.get("created")) or timezone.now(),
        "completed_at": _moment(times.get("completed")),
        "error": error.message[:2000] if error is not None else "",
    }
    if row is None:
        row, _ = Message.objects.update_or_create(
            project=project, opencode_id=str(info["id"])[:100], defaults=values
        )
        return row
    Message.objects.filter(pk=row.pk).update(**values)
    for name, value in values.items():
        setattr(row, name, value)
    return row


def _parts_write(message: Message, parts: list[Any]) -> None:
    existing = {part.opencode_id: part for part in Part.objects.filter(message=message)}
    new, changed = [], []
    for position, part in enumerate(parts):
        if not isinstance(part, dict) or not part.get("id"):
            continue
        fields = _part_fields(part)
        if fields is None:
            continue
        fields["position"] = position
        row = existing.get(str(part["id"]))
        if row is None:
            new.append(Part(message=message, opencode_id=str(part["id"])[:100], **fields))
        elif any(getattr(row, name) != value for name, value in fields.items()):
            for name, value in fields.items():
                setattr(row, name, value)
            changed.append(row)
    if new:
        Part.objects.bulk_create(new, ignore_conflicts=True)
    if changed:
        Part.objects.bulk_update(
            changed,
            [
                "position",
                "kind",
                "text",
                "size",
                "tool",
                "title",
                "status",
                "input",
                "output",
                "output_size",
                "files",
            ],
        )


def _tokens(info: dict[str, Any]) -> dict[str, int]:
    tokens = info.get("tokens") if isinstance(info.get("tokens"), dict) else {}
    cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}

    def count(value: Any) -> int:
        try:
            return max(0, int(value or 0))
        except (TypeError, ValueError):
            return 0

    return {
        "input_tokens": count(tokens.get("input")),
        "output_tokens": count(tokens.get("output")),
        "reasoning_tokens": count(tokens.get("reasoning")),
        "cache_read_tokens": count(cache.get("read")),
        "cache_write_tokens": count(cache.get("write")),
    }


def _cost(info: dict[str, Any]) -> Decimal:
    try:
        cost = Decimal(str(info.get("cost") or 0))
    except (InvalidOperation, ValueError):
        return Decimal(0)
    return cost if cost.is_finite() and cost >= 0 else Decimal(0)


def _usage_record(project: Project, info: dict[str, Any]) -> int:
    """The finished reply's usage, once (its message id is unique). Which credential
    paid: the connection the owner's project uses for the reply's provider (their own,
    or a team key: ``connections_in_use``), if any."""
    message_id = str(info["id"])[:100]
    if Usage.objects.filter(message_id=message_id).exists():
        return 0
    provider_id = str(info.get("providerID") or project.current_model_provider_id)[:100]
    connection = connection_in_use(user=project.owner_id, provider_id=provider_id)
    cost = _cost(info)
    if connection is not None:
        credential = credential_label(connection)
        # An endpoint with no declared price: tokens only.
        priced = cost > 0 or not connection.is_custom or bool(connection.prices)
    else:
        credential = "OpenCode" if provider_id == "opencode" else ""
        priced = True
    moment = _moment((info.get("time") or {}).get("completed")) or timezone.now()
    try:
        with transaction.atomic():
            Usage.objects.create(
                user_id=project.owner_id,
                project=project,
                project_name=project.name[:200],
                message_id=message_id,
                provider_id=provider_id,
                model_id=str(info.get("modelID") or project.current_model_id)[:255],
                connection=connection,
                credential=credential,
                cost=cost,
                priced=priced,
                created_at=moment,
                **_tokens(info),
            )
    except IntegrityError:  # recorded meanwhile by another reader
        return 0
    if connection is not None:
        type(connection).objects.filter(pk=connection.pk).update(last_used_at=moment)
        _audit_use(connection, project)
    return 1


def _audit_use(connection, project: Project) -> None:
    """One audit event per connection, project and day it paid for: not per token."""
    if not AuditEvent.objects.filter(
        action=AuditEvent.Action.USED,
        connection=connection,
        project_id=project.pk,
        created_at__date=timezone.localdate(),
    ).exists():
        audit_record(
            action=AuditEvent.Action.USED,
            connection=connection,
            project_id=project.pk,
        )


#: The page shows this many of the latest messages (the rest on request): a long
#: conversation renders in the same time as a short one.
WINDOW = 40


def conversation_of(project: Project, *, last: int | None = WINDOW) -> tuple[list[Message], int]:
    """doce's copy of the conversation, in order, with the parts: the ``last`` messages
    (None: all), and how many earlier ones were left out (three queries at most)."""
    messages = Message.objects.filter(project=project).prefetch_related("parts")
    if last is None:
        return list(messages), 0
    latest = list(messages.order_by("-created_at", "-id")[: last + 1])
    earlier = 0
    if len(latest) > last:
        latest = latest[:last]
        earlier = Message.objects.filter(project=project).count() - last
    return latest[::-1], earlier
