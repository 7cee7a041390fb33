"""Last line of defence: redact anything that looks like a credential from log output.

Code must never log secrets in the first place; this filter catches mistakes (an
exception message that echoes a request body, a URL with a key in it).
"""

from __future__ import annotations

import logging
import re

REDACTED = "[REDACTED]"

_PATTERNS = [
    # Provider API keys by their well-known prefixes.
    r"sk-(?:ant|or|proj|svcacct|admin)-[A-Za-z0-9_\-]{8,}",
    r"sk-[A-Za-z0-9_\-]{16,}",
    r"gh[pousr]_[A-Za-z0-9]{20,}",
    r"github_pat_[A-Za-z0-9_]{20,}",
    r"glpat-[A-Za-z0-9_\-]{16,}",
    r"AIza[0-9A-Za-z_\-]{30,}",
    r"gsk_[A-Za-z0-9]{20,}",
    r"xai-[A-Za-z0-9]{20,}",
    r"hf_[A-Za-z0-9]{20,}",
    r"ya29\.[A-Za-z0-9_\-]{20,}",
    # Fernet tokens (version byte 0x80 -> "gAAAAA" in url-safe base64).
    r"gAAAAA[A-Za-z0-9_\-]{20,}={0,2}",
]
_KEYED = re.compile("|".join(f"(?:{pattern})" for pattern in _PATTERNS))
# "Bearer xyz", "Basic xyz", "api_key=xyz", '"key": "xyz"' keep the label, lose the value.
_SCHEME = re.compile(r"(?i)(\b(?:bearer|basic)\s+)([A-Za-z0-9._~+/\-]{6,}=*)")
_LABELLED = re.compile(
    r"(?i)(\b(?:api[_-]?key|x-api-key|access[_-]?token|refresh[_-]?token|token|password|"
    r"secret|authorization|key)[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\[REDACTED\])(?!(?:bearer|basic)\s)([^\s\"',;}&]{6,})"
)


def redact(text: str) -> str:
    text = _KEYED.sub(REDACTED, text)
    text = _SCHEME.sub(lambda match: match.group(1) + REDACTED, text)
    return _LABELLED.sub(lambda match: match.group(1) + REDACTED, text)


class RedactSecretsFilter(logging.Filter):
    """Rewrite the record's message (and traceback text) with secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not lose the record
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
