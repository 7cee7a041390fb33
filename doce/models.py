"""The server-slot ledger (doce.capacity): one row per OpenCode server that runs or waits
to run, whatever it serves."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ServerSlot(models.Model):
    """A server that holds a slot (``held``) or waits for one (``waiting``).

    ``kind`` says what the server serves (a registered kind: "project", "oauth_flow",
    "catalog", ...), ``key`` which one (a project id, a flow id). ``runtime_state`` is
    where the server runs once started, so a server that died frees its slot."""

    class State(models.TextChoices):
        HELD = "held", "Running"
        WAITING = "waiting", "Waiting"

    class WaitingFor(models.TextChoices):
        NOTHING = "", "-"
        SERVER = "server", "a free server slot"
        USER = "user", "one of the owner's own servers"

    kind = models.CharField(max_length=32)
    key = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="server_slots",
    )
    # Whether it counts toward its owner's bound (its kind was registered per_user).
    counts_for_owner = models.BooleanField(default=False)
    state = models.CharField(max_length=8, choices=State.choices)
    waiting_for = models.CharField(max_length=8, choices=WaitingFor.choices, blank=True, default="")
    runtime_state = models.JSONField(default=dict, blank=True)
    # The queue's order: a waiter keeps its place while it keeps asking.
    created_at = models.DateTimeField()
    updated_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "key"], name="doce_server_slot_unique"),
        ]
        indexes = [models.Index(fields=["state", "created_at"], name="doce_slot_state_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.key} ({self.state})"
