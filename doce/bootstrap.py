"""First-run secrets: create a key file once, never overwrite it.

Used by settings while DEBUG is on and no key is given in the environment. Losing the
encryption key file would make every stored credential unreadable, so a file that exists
is always read back, never regenerated.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

#: Messages for the log; settings run before logging is configured, so the app's
#: ``ready()`` emits them.
PENDING_MESSAGES: list[str] = []


def read_or_create_key_file(path: Path, generate: Callable[[], str]) -> str:
    """Return the key stored in ``path``; create it (mode 0600) only if it is absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text().strip()
        if not value:
            raise ValueError(
                f"{path} exists but is empty. Restore it from a backup or delete it on purpose "
                "(a new key cannot decrypt what the old one encrypted)."
            ) from None
        return value
    value = generate()
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    PENDING_MESSAGES.append(
        f"Generated {path} (mode 0600) because DEBUG is on and no key was given. Back it "
        "up with the database: it will be read again at every start, never replaced."
    )
    return value
