"""How doce's pages say how long ago something happened: one wording everywhere."""

from __future__ import annotations

from datetime import datetime


def ago(moment: datetime | None, now: datetime) -> str:
    """ "just now", "5 min ago", "2 h ago", "3 d ago"; "never" for None."""
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"
