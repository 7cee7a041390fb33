"""A project: the user's prompt, its model, and the state of its own OpenCode server."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from doce.encrypted_fields import EncryptedTextField
from providers.credentials import PROVIDER_NOT_CONFIGURED


class Project(models.Model):
    class Status(models.TextChoices):
        CREATED = "created", "Created"
        STARTING = "starting", "Starting"
        RUNNING = "running", "Running"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        ERROR = "error", "Error"
        DELETING = "deleting", "Deleting"

    class ErrorKind(models.TextChoices):
        NONE = "", "None"
        PROVIDER_AUTH = "provider_auth", PROVIDER_NOT_CONFIGURED
        RUNTIME = "runtime", "Server problem"
        PIPELINE = "pipeline", "Pipeline step failed"

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="projects"
    )
    name = models.CharField(max_length=200)
    prompt = models.TextField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    current_model_provider_id = models.CharField(max_length=100)
    current_model_id = models.CharField(max_length=255)

    # Runtime state: what the runtime returned when it started the server (port, pid and
    # its start time, or the compose project), so a reconciler can check it is still ours.
    runtime = models.CharField(max_length=16, blank=True, default="")
    runtime_state = models.JSONField(default=dict, blank=True)
    data_dir = models.CharField(max_length=500, blank=True, default="")
    server_password = EncryptedTextField(null=True, blank=True)

    bootstrap_session_id = models.CharField(max_length=100, blank=True, default="")
    initial_prompt_sent = models.BooleanField(default=False)
    provider_credentials_set = models.BooleanField(default=False)
    # The server's instance caches providers: after a credential change it must be
    # disposed (rebuilt) before the next prompt, but never under a running prompt.
    # Set when a change lands, cleared by the dispose (projects.instance).
    rebuild_pending = models.BooleanField(default=False)
    error_kind = models.CharField(max_length=32, choices=ErrorKind.choices, blank=True, default="")
    error_message = models.TextField(blank=True, default="")
    # What the server-slot bounds did to the project (projects.capacity): waiting for a
    # slot, or stopped to make room for another of the owner's projects. Not an error.
    server_note = models.CharField(max_length=500, blank=True, default="")
    last_activity_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="projects_owner_created_idx"),
            models.Index(fields=["status"], name="projects_status_idx"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def model(self) -> str:
        """``provider/model`` as OpenCode and the forms write it."""
        return f"{self.current_model_provider_id}/{self.current_model_id}"


class PooledServer(models.Model):
    """A server of the warm pool (projects.pool): started ahead of demand with a neutral
    opencode.json and no credential, in a folder of its own. A new project that claims it
    takes over its folder, port, process and password, and this row goes: a pooled
    server serves one project, never a second."""

    class State(models.TextChoices):
        STARTING = "starting", "Starting"
        WARMING = "warming", "Warming up"
        READY = "ready", "Ready"

    # Names its folder and its slot in the server ledger (doce.capacity, kind "pool").
    key = models.CharField(max_length=32, unique=True)
    state = models.CharField(max_length=8, choices=State.choices, default=State.STARTING)
    runtime = models.CharField(max_length=16)
    runtime_state = models.JSONField(default=dict, blank=True)
    data_dir = models.CharField(max_length=500)
    server_password = EncryptedTextField()
    # The throw-away session of the warm-up prompt, deleted once it has run.
    warm_session = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    ready_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["state", "ready_at"], name="projects_pool_state_idx")]

    def __str__(self) -> str:
        return f"pooled server {self.key} ({self.state})"
