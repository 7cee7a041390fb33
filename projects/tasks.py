"""Periodic housekeeping of projects (scheduled by beat): notice servers that died, stop
the servers of failed projects, stop projects left idle. Takes and returns no secret."""

from __future__ import annotations

from celery import shared_task

from projects.reconcile import projects_reconcile, projects_stop_failed, projects_stop_idle
from projects.tokens import oauth_tokens_watch


@shared_task(name="projects.reconcile", ignore_result=True)
def reconcile() -> None:
    projects_reconcile()  # running projects whose server died turn to error first,
    projects_stop_failed()  # so their leftovers (a container, a record) are cleaned here
    projects_stop_idle()


@shared_task(name="projects.watch_oauth_tokens", acks_late=False, ignore_result=True)
def watch_oauth_tokens() -> int:
    """OAuth tokens a project's OpenCode refreshed reach the connection and the user's
    other projects (projects.tokens; scheduled by beat every few seconds)."""
    return oauth_tokens_watch()
