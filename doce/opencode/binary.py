"""Locate the pinned OpenCode binary and read its version."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from django.conf import settings


def find() -> Path | None:
    """The configured binary, else the one package.json installs, else one on PATH.

    npm may skip opencode-ai's postinstall (which replaces the ``.bin/opencode``
    placeholder), so the platform package's own binary is preferred.
    """
    if settings.DOCE_OPENCODE_BIN:
        path = Path(settings.DOCE_OPENCODE_BIN)
        return path if path.is_file() and os.access(path, os.X_OK) else None
    modules = settings.BASE_DIR / "node_modules"
    candidates = sorted(modules.glob("opencode-linux-*/bin/opencode"))
    # Prefer the regular build over "-baseline" / "-musl" variants when several exist.
    candidates.sort(key=lambda path: ("baseline" in path.parts[-3], "musl" in path.parts[-3]))
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    on_path = shutil.which("opencode")
    return Path(on_path) if on_path else None


@functools.lru_cache(maxsize=4)
def _version(path: str, mtime: float) -> str:
    result = subprocess.run(
        [path, "--version"], capture_output=True, text=True, timeout=20, check=True
    )
    return result.stdout.strip().splitlines()[-1]


def version(path: Path) -> str:
    """The binary's version string (cached per path and modification time)."""
    return _version(str(path), path.stat().st_mtime)
