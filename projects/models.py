"""A project: the user's prompt, its model, and the state of its own OpenCode server."""

from __future__ import annotations

import base64
import re
import secrets

from django.conf import settings
from django.db import models

from doce.encrypted_fields import EncryptedTextField
from providers.credentials import PROVIDER_NOT_CONFIGURED

PREVIEW_TOKEN_RE = re.compile(r"[a-z2-7]{32}")


def new_preview_token() -> str:
    """An unguessable capability: whoever holds it sees the project's site preview.
    160 random bits in lowercase base32 (32 characters of ``a-z2-7``), so that it is
    also a valid DNS label: with one subdomain per project it is the preview's host
    name's first label, which DNS folds to lowercase and where ``_`` is not allowed."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


def is_preview_token(value: str) -> bool:
    return PREVIEW_TOKEN_RE.fullmatch(value) is not None


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
    # The site preview's capability (projects.preview): the first segment of every preview
    # URL; a new one (the owner's "New preview link") makes the old links show nothing.
    preview_token = models.CharField(max_length=64, unique=True, default=new_preview_token)
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


class Message(models.Model):
    """One message of a project's conversation, mirrored from its OpenCode server
    (projects.conversation): the page renders from this copy, whether the server runs,
    was stopped, crashed or replaced."""

    class Role(models.TextChoices):
        USER = "user", "You"
        ASSISTANT = "assistant", "Agent"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="messages")
    opencode_id = models.CharField(max_length=100)
    session_id = models.CharField(max_length=100)
    role = models.CharField(max_length=16, choices=Role.choices)
    provider_id = models.CharField(max_length=100, blank=True, default="")
    model_id = models.CharField(max_length=255, blank=True, default="")
    # Our words for how the reply ended (projects.conversation, from message_error).
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["project", "opencode_id"], name="projects_message_unique"
            )
        ]
        indexes = [
            models.Index(fields=["project", "created_at"], name="projects_message_order_idx")
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.opencode_id}"


class Part(models.Model):
    """A part of a message: text, a reasoning summary, a tool call (its title, input and
    a bounded output), the files an edit changed, an error. Long texts are cut at
    ``projects.conversation.MAX_TEXT`` characters; ``size`` keeps the full length."""

    class Kind(models.TextChoices):
        TEXT = "text", "Text"
        REASONING = "reasoning", "Reasoning"
        TOOL = "tool", "Tool"
        PATCH = "patch", "Files changed"
        FILE = "file", "File"
        OTHER = "other", "Other"

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="parts")
    opencode_id = models.CharField(max_length=100)
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=16, choices=Kind.choices)
    text = models.TextField(blank=True, default="")
    size = models.PositiveBigIntegerField(default=0)
    # A tool call: its name, what it said it does, its state, input and output.
    tool = models.CharField(max_length=100, blank=True, default="")
    title = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=16, blank=True, default="")
    input = models.TextField(blank=True, default="")
    output = models.TextField(blank=True, default="")
    output_size = models.PositiveBigIntegerField(default=0)
    files = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["message", "opencode_id"], name="projects_part_unique")
        ]

    def __str__(self) -> str:
        return f"{self.kind} part {self.opencode_id}"


class Usage(models.Model):
    """What one reply of the agent cost: tokens and money, with who, which project,
    provider and model, and which credential paid. Kept when the project is deleted (the
    money was spent): ``project`` goes null, ``project_name`` stays."""

    # Indexed by (user, created_at) below, which also serves lookups by user alone.
    #: The kinds of token a reply is counted in, as OpenCode reports them; every one
    #: counts toward a token budget (projects.budgets).
    TOKEN_KINDS = ("input", "output", "reasoning", "cache_read", "cache_write")
    TOKEN_FIELDS = tuple(f"{kind}_tokens" for kind in TOKEN_KINDS)

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="usage", db_index=False
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage"
    )
    project_name = models.CharField(max_length=200)
    message_id = models.CharField(max_length=100, unique=True)  # OpenCode's, global
    provider_id = models.CharField(max_length=100)
    model_id = models.CharField(max_length=255)
    # The connection that paid (the user's own; later a shared one); null: none stored
    # (OpenCode's free models, the legacy key) or it was removed since.
    connection = models.ForeignKey(
        "providers.ProviderConnection",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="usage",
    )
    credential = models.CharField(max_length=100, blank=True, default="")  # what paid, in words
    input_tokens = models.PositiveBigIntegerField(default=0)
    output_tokens = models.PositiveBigIntegerField(default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0)
    cache_read_tokens = models.PositiveBigIntegerField(default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    # False: the model has no price (a custom endpoint without one): tokens, cost 0.
    priced = models.BooleanField(default=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "created_at"], name="projects_usage_user_idx"),
            models.Index(fields=["created_at"], name="projects_usage_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id}/{self.model_id}: {self.total_tokens} tokens"

    @property
    def total_tokens(self) -> int:
        return sum(getattr(self, name) for name in self.TOKEN_FIELDS)


class Budget(models.Model):
    """A user's monthly budget, overriding the settings' default
    (``DOCE_BUDGET_TOKENS``, ``DOCE_BUDGET_USD``); an empty field: no bound of that kind."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget"
    )
    tokens = models.PositiveBigIntegerField(null=True, blank=True)
    usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"budget of user {self.user_id}"
