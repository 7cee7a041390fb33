"""One row per job, so users and operators see what runs, what failed and why.

A job belongs to a *subject*: the row its work is about, of the model that
settings.QUEUE_JOBS_SUBJECT_MODEL names (as AUTH_USER_MODEL names the user model). The
engine never looks inside it; it only locks it while a pipeline is created."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from queue_jobs import registry


class JobState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    RETRYING = "retrying", "Retrying"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)


class Job(models.Model):
    subject = models.ForeignKey(
        settings.QUEUE_JOBS_SUBJECT_MODEL, on_delete=models.CASCADE, related_name="jobs"
    )
    pipeline = models.UUIDField(default=uuid.uuid4, db_index=True)
    position = models.PositiveSmallIntegerField(default=0)
    type = models.CharField(max_length=64)  # a registered step (queue_jobs.registry)
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=5)
    last_error = models.TextField(blank=True, default="")
    # Arguments that are not secrets (e.g. a provider id).
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
                fields=["subject", "type"],
                condition=Q(state__in=["queued", "running", "retrying"]),
                name="queue_jobs_one_active_job_per_type",
            ),
        ]
        indexes = [models.Index(fields=["state", "updated_at"], name="queue_jobs_state_idx")]

    def __str__(self) -> str:
        return f"{self.type} #{self.pk} ({self.state})"

    @property
    def label(self) -> str:
        return registry.label(self.type)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None
