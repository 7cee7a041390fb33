"""Input rules every app's forms share: control characters, OpenCode's config
substitutions, and how long a repeated submit counts as a double click rather than a
second request."""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta

from django.core.exceptions import ValidationError

#: A submit repeated within this window (same values) answers what the first one did.
DOUBLE_SUBMIT_WINDOW = timedelta(seconds=30)

# One-line values (keys, names, ids) take no line break, tab or invisible format
# character (zero-width spaces, direction marks) that a paste can smuggle in.
_ONE_LINE_FORBIDDEN = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Free text (prompts, messages) keeps line breaks and tabs, and format characters such
# as the zero-width joiner inside emoji.
_TEXT_ALLOWED_CONTROLS = frozenset("\n\r\t")


# OpenCode replaces ``{env:NAME}`` and ``{file:path}`` anywhere in opencode.json with a
# variable's value or a file's content before it reads the JSON: a name or an id that doce
# writes there must not hold one.
_CONFIG_SUBSTITUTION = re.compile(r"\{(env|file):", re.IGNORECASE)


def has_config_substitution(value: str) -> bool:
    """Would OpenCode expand part of ``value`` written into opencode.json?"""
    return bool(_CONFIG_SUBSTITUTION.search(value))


def config_substitution_message(what: str) -> str:
    """The one message for a value that holds ``{env:`` or ``{file:`` (``what``: "A base
    URL", "The value of X-Org", ...)."""
    return (
        f"{what} cannot contain “{{env:” or “{{file:”: OpenCode would replace it with an "
        "environment variable or a file of its server."
    )


def refuse_config_substitution(value: str, *, what: str) -> None:
    """The shared rule for every value a user types that ends up in opencode.json or in a
    request (a base URL, header names and values, option values, a key, a name, a model
    id): ValidationError when OpenCode would expand part of it."""
    if has_config_substitution(value):
        raise ValidationError(config_substitution_message(what), code="config_substitution")


def has_control_characters(value: str, *, multiline: bool = False) -> bool:
    if multiline:
        return any(
            unicodedata.category(char) == "Cc" and char not in _TEXT_ALLOWED_CONTROLS
            for char in value
        )
    return any(unicodedata.category(char) in _ONE_LINE_FORBIDDEN for char in value)
