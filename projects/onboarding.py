"""The checklist a new user sees on the project list: connect a provider (or start with
OpenCode's free models, which need none), create the first project, and for staff invite
the team. It is gone once every step is done, or once a staff member dismissed it."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from doce.team.selectors import user_count
from doce.team.services import onboarding_dismissed
from providers.catalog import free_models
from providers.selectors import usable_provider_ids


@dataclass(frozen=True)
class Step:
    key: str
    title: str
    done: bool
    url: str
    note: str = ""


@dataclass(frozen=True)
class Checklist:
    steps: list[Step]
    dismissible: bool


def onboarding_checklist(*, user, has_projects: bool) -> Checklist | None:
    """None when there is nothing left to show: a non-staff user with a project, or a
    staff member with a project and a team (or who dismissed the list)."""
    if has_projects and not user.is_staff:
        return None
    if user.is_staff and onboarding_dismissed(user=user):
        return None
    team = user_count() > 1 if user.is_staff else True
    if has_projects and team:
        return None
    connected = bool(usable_provider_ids(user=user))
    note = ""
    if not connected and free_models():
        note = "Or skip this for now: OpenCode's free models work without any connection."
    steps = [
        Step("provider", "Connect an LLM provider", connected, reverse("providers:add"), note),
        Step("project", "Create your first project", has_projects, reverse("projects:new")),
    ]
    if user.is_staff:
        steps.append(Step("team", "Invite your team", team, reverse("team:team")))
    return Checklist(steps=steps, dismissible=user.is_staff)
