"""One row per pipeline step, so users and operators see what runs, what failed and why."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q


class JobType(models.TextChoices):
    RUNTIME_UP = "runtime.up", "Start the project's server"
    WAIT_HEALTHY = "opencode.wait_healthy", "Wait for OpenCode"
    SET_CREDENTIALS = "opencode.set_provider_credentials", "Give it your provider credential"
    SESSION_CREATE = "opencode.session_create", "Open a session"
    SEND_INITIAL_PROMPT = "opencode.send_initial_prompt", "Send your prompt"
    # Work on a running project, outside the start-up chain.
    REINJECT_CREDENTIALS = "opencode.reinject_credentials", "Update the provider credential"
    REMOVE_CREDENTIALS = "opencode.remove_credentials", "Remove a provider credential"
    RUNTIME_DOWN = "runtime.down", "Stop the project's server"
    PROJECT_DELETE = "project.delete", "Delete the project"


#: The start-up chain, in order (DESIGN.md: the per-project pipeline).
START_PIPELINE = [
    JobType.RUNTIME_UP,
    JobType.WAIT_HEALTHY,
    JobType.SET_CREDENTIALS,
    JobType.SESSION_CREATE,
    JobType.SEND_INITIAL_PROMPT,
]


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)


class Job(models.Model):
    project = models.ForeignKey("projects.Project", on_delete=models.CASCADE, related_name="jobs")
    pipeline = models.UUIDField(default=uuid.uuid4, db_index=True)
    position = models.PositiveSmallIntegerField(default=0)
    type = models.CharField(max_length=64, choices=JobType.choices)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    last_error = models.TextField(blank=True, default="")
    # Arguments that are not secrets (e.g. the provider id to remove).
    params = models.JSONField(default=dict, blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "position"]
        constraints = [
            # A double click, or two workers, never start the same step twice at once.
            models.UniqueConstraint(
                fields=["project", "type"],
                condition=Q(state__in=["queued", "running", "retrying"]),
                name="queue_jobs_one_active_job_per_type",
            ),
        ]
        indexes = [models.Index(fields=["state", "updated_at"], name="queue_jobs_state_idx")]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk} ({self.state})"

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
