"""Provider connections, per-user settings (with the legacy OpenRouter key), the audit log,
the cached provider catalog and OAuth sign-in flows.

Secrets live in ``EncryptedTextField`` columns: plaintext in Python, Fernet tokens in the
database. Nothing here is ever shown in a page: the UI and the admin show ``key_hint``.
"""

from __future__ import annotations

import json
import re
import uuid

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from doce.encrypted_fields import UNDECRYPTABLE_MESSAGE, EncryptedTextField, is_undecryptable
from providers.options import credential_in_options

PROVIDER_ID_RE = r"^[a-z0-9][a-z0-9._-]{0,99}$"
validate_provider_id = RegexValidator(
    PROVIDER_ID_RE,
    "A provider id is lower-case letters, digits, '.', '_' or '-' (e.g. 'openrouter').",
)

# One segment of a vendor prefix such as "sk-ant-", "sk-or-" or "ghp_".
_PREFIX_SEGMENT = re.compile(r"[A-Za-z][A-Za-z0-9]{0,3}[-_]")
_MAX_PREFIX = 8


def key_hint(secret: str | None) -> str:
    """What a page may show of a key: its vendor prefix and its last 4 characters.

    ``sk-ant-api03-…f3a9`` keeps the non-secret prefix (whole segments, at most 8
    characters, only on keys long enough to keep most of themselves hidden); short keys
    show 2 characters, and keys under 8 characters show nothing of themselves.
    """
    secret = (secret or "").strip()
    if len(secret) < 8:
        return "…" if secret else ""
    tail = secret[-4:] if len(secret) >= 16 else secret[-2:]
    prefix = ""
    while len(secret) >= 20 and prefix.count("-") + prefix.count("_") < 3:
        match = _PREFIX_SEGMENT.match(secret, len(prefix))
        if not match or len(prefix) + len(match.group()) > _MAX_PREFIX:
            break
        prefix += match.group()
    return f"{prefix}…{tail}"


class UserSettings(models.Model):
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="doce_settings",
    )
    # Legacy (the old system's one OpenRouter key): kept, never dropped, encrypted in place.
    openrouter_api_key = EncryptedTextField(null=True, blank=True)
    default_model = models.CharField(max_length=255, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)
    preferred_provider_id = models.CharField(max_length=100, blank=True, default="")
    provider_auth_initialized = models.BooleanField(default=False)
    migration_completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "user_settings"
        verbose_name = "user settings"
        verbose_name_plural = "user settings"

    def __str__(self) -> str:
        return f"settings of {self.user}"

    @property
    def legacy_key_state(self) -> str:
        """``none``, ``stored`` or ``undecryptable``: what an operator may know of it."""
        if is_undecryptable(self.openrouter_api_key):
            return "undecryptable"
        return "stored" if self.openrouter_api_key else "none"


class ProviderConnection(models.Model):
    class AuthType(models.TextChoices):
        API = "api", "API key"
        OAUTH = "oauth", "OAuth"

    class Status(models.TextChoices):
        CONNECTED = "connected", "Connected"
        EXPIRED = "expired", "Expired"
        ERROR = "error", "Error"
        REVOKED = "revoked", "Revoked"

    #: The encrypted columns of the credential; ``SECRETS_BY_AUTH_TYPE`` says which one
    #: each type uses.
    AUTH_SECRET_FIELDS = ("api_key", "oauth_access_token", "oauth_refresh_token")
    #: Every encrypted column: the credential's and the provider options' secret part.
    SECRET_FIELDS = (*AUTH_SECRET_FIELDS, "secret_options")
    SECRETS_BY_AUTH_TYPE = {
        AuthType.API: ("api_key",),
        AuthType.OAUTH: ("oauth_access_token", "oauth_refresh_token"),
    }

    # Empty for a *shared* connection (a team key): staff made it, the grants below say
    # who may use it, and nobody sees its key (docs/providers.md).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="provider_connections",
        db_index=False,  # the named index in Meta
        null=True,
        blank=True,
    )
    provider_id = models.CharField(max_length=100, validators=[validate_provider_id])
    auth_type = models.CharField(max_length=16, choices=AuthType.choices, default=AuthType.API)

    api_key = EncryptedTextField(null=True, blank=True)
    oauth_access_token = EncryptedTextField(null=True, blank=True)
    oauth_refresh_token = EncryptedTextField(null=True, blank=True)
    # No "wellknown" type: OpenCode keeps such an entry under an organisation's URL, not
    # a provider, and gets its token by running a command the organisation names
    # (docs/opencode.md); migration 0007 removed the columns.
    key_hint = models.CharField(max_length=32, blank=True, default="")

    oauth_expires_at = models.DateTimeField(null=True, blank=True)
    oauth_enterprise_url = models.URLField(max_length=500, blank=True, default="")
    oauth_account_id = models.CharField(max_length=255, blank=True, default="")
    # The one project whose server holds the spendable refresh token (an id: the Project
    # model lives in the app above); the others get the access token only and follow.
    # Empty: the next project given the credential takes it (docs/oauth-tokens.md).
    oauth_token_holder = models.BigIntegerField(null=True, blank=True)
    # Non-secret prompt inputs (e.g. a Cloudflare account id); sent as the api body's
    # "metadata", so nothing doce-internal goes in here.
    metadata = models.JSONField(default=dict, blank=True)
    # A custom endpoint's price, US dollars per million tokens ({"input": "3",
    # "output": "15"}), written into its models' "cost" in opencode.json; empty: no price.
    prices = models.JSONField(default=dict, blank=True)
    # Provider options (providers.options): the non-secret ones as OpenCode takes them in
    # opencode.json (e.g. {"resourceName": ...}, {"region": ...}); the secret ones (AWS
    # keys, a service-account JSON, header values) as one encrypted JSON object.
    options = models.JSONField(default=dict, blank=True)
    secret_options = EncryptedTextField(null=True, blank=True)

    # A custom OpenAI-compatible provider (declared in the project's opencode.json), with
    # ``models`` below.
    name = models.CharField(max_length=100, blank=True, default="")
    base_url = models.URLField(max_length=500, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CONNECTED)
    error_message = models.TextField(blank=True, default="")
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_validated_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # A shared connection's grants: everyone, or these users and the members of these
    # groups. Meaningless on a user's own connection.
    shared_with_all = models.BooleanField(
        "shared with everyone", default=False, help_text="Every user may use this team key."
    )
    shared_with_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="granted_connections"
    )
    shared_with_groups = models.ManyToManyField(
        "auth.Group", blank=True, related_name="granted_connections"
    )
    shared_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The staff member who shared it.",
    )
    # Last: from here on, ``models`` in this class body is the field, not the module.
    models = models.JSONField(default=list, blank=True, help_text="Model ids, one per entry.")

    class Meta:
        db_table = "provider_connections"
        ordering = ["provider_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "provider_id"], name="provider_connections_user_provider_uniq"
            ),
            # One team key per provider (``manage.py shared_connection remove PROVIDER_ID``).
            models.UniqueConstraint(
                fields=["provider_id"],
                condition=Q(user__isnull=True),
                name="provider_connections_shared_provider_uniq",
            ),
            models.CheckConstraint(
                condition=Q(status__in=["connected", "expired", "error", "revoked"]),
                name="provider_connections_status_valid",
            ),
            models.CheckConstraint(
                condition=Q(auth_type__in=["api", "oauth"]),
                name="provider_connections_auth_type_valid",
            ),
        ]
        indexes = [
            models.Index(fields=["user"], name="provider_conn_user_idx"),
            models.Index(fields=["status"], name="provider_conn_status_idx"),
        ]

    def __str__(self) -> str:
        if self.is_shared:
            return f"{self.provider_id} (team key {self.name or self.provider_id})"
        return f"{self.provider_id} ({self.user})"

    @property
    def is_shared(self) -> bool:
        """A team key: no owner, used by the users its grants name."""
        return self.user_id is None

    @property
    def endpoint_trusted(self) -> bool:
        """May its base URL reach this machine and private networks (``doce.endpoints``)?
        Staff typed it: the owner is staff, or it is a team key."""
        return self.user_id is None or self.user.is_staff

    @property
    def is_custom(self) -> bool:
        return bool(self.base_url)

    def undecryptable_fields(self) -> list[str]:
        return [name for name in self.SECRET_FIELDS if is_undecryptable(getattr(self, name))]

    @property
    def effective_status(self) -> str:
        """The status to show: ``error`` as soon as a secret cannot be decrypted, even
        before anything has recorded it."""
        return self.Status.ERROR if self.undecryptable_fields() else self.status

    @property
    def effective_error_message(self) -> str:
        return UNDECRYPTABLE_MESSAGE if self.undecryptable_fields() else self.error_message

    @property
    def oauth_expiry_note(self) -> str:
        """What the providers page says of a connected OAuth token's expiry: OpenCode
        refreshes it itself, so a passed expiry is not "expired" (``status`` says that,
        once a refresh failed or cannot be made)."""
        if self.auth_type != self.AuthType.OAUTH or self.status != self.Status.CONNECTED:
            return ""
        if not self.oauth_expires_at:
            return "does not expire"
        if not self.oauth_refresh_token:
            return "no refresh token: sign in again when it expires"
        seconds = (self.oauth_expires_at - timezone.now()).total_seconds()
        if seconds < 0:
            return f"expired {int(-seconds // 60)} min ago, refreshes automatically at the next use"
        return f"expires in {int(seconds // 60)} min, refreshes automatically"

    def missing_secrets(self, *, keyless_custom_ok: bool = False) -> list[str]:
        """The auth type's secrets that are empty. A custom endpoint may have no key (a
        local server), and so may a provider whose options carry its credential (Amazon
        Bedrock with access keys, Google Vertex): valid to save, but ``credential_for``
        reports it keyless, and the pipeline then injects nothing."""
        used = self.SECRETS_BY_AUTH_TYPE.get(self.auth_type, ())
        if keyless_custom_ok and (self.is_custom or self.options_hold_credential):
            used = tuple(key for key in used if key != "api_key")
        return [key for key in used if not getattr(self, key)]

    @property
    def secret_option_values(self) -> dict:
        """The decrypted secret options ({} when none; never render them)."""
        if not self.secret_options or is_undecryptable(self.secret_options):
            return {}
        try:
            value = json.loads(str(self.secret_options))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    @property
    def options_hold_credential(self) -> bool:
        """Do the options stand in for an API key (``providers.options``)?"""
        return credential_in_options(self.provider_id, self.secret_option_values)

    @property
    def option_names(self) -> list[str]:
        """What a page (or the admin) may show of the options: their names, with the
        secret ones' names (a header's name included), never a secret value."""
        names = sorted(self.options or {})
        secret = self.secret_option_values
        names += sorted(key for key in secret if key != "headers")
        names += [f"header {name}" for name in (secret.get("headers") or {})]
        return names

    def refresh_key_hint(self) -> None:
        primary = {
            self.AuthType.API: self.api_key,
            self.AuthType.OAUTH: self.oauth_access_token or self.oauth_refresh_token,
        }.get(self.auth_type)
        if not is_undecryptable(primary):  # else keep the hint made when it was readable
            self.key_hint = key_hint(primary)


class SharedConnectionManager(models.Manager):
    def get_queryset(self):
        return super().get_queryset().filter(user__isnull=True)


class SharedConnection(ProviderConnection):
    """Team keys (``ProviderConnection`` rows without an owner), for their admin page."""

    objects = SharedConnectionManager()

    class Meta:
        proxy = True
        verbose_name = "team key"
        verbose_name_plural = "team keys (shared connections)"


MODEL_PATTERN_RE = r"^[a-z0-9][a-z0-9._-]{0,99}(/[^\s*]*\*?)?$"


class ModelAccess(models.Model):
    """One rule of who may pick which models (``providers.access``): for a user or a
    group, allow or deny a provider (``openrouter``), a model (``openrouter/x/y``) or
    the models under a prefix (``openrouter/anthropic/*``). Without an allow rule a user
    may pick whatever their credentials reach; with one, only what an allow rule names.
    A deny rule always wins."""

    class Effect(models.TextChoices):
        ALLOW = "allow", "Allow"
        DENY = "deny", "Deny"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="model_access_rules",
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="model_access_rules",
    )
    effect = models.CharField(max_length=8, choices=Effect.choices, default=Effect.ALLOW)
    pattern = models.CharField(
        max_length=356,
        validators=[
            RegexValidator(
                MODEL_PATTERN_RE,
                "A provider (openrouter), a model (openrouter/anthropic/claude-sonnet-4) "
                "or a prefix ending in * (openrouter/anthropic/*).",
            )
        ],
        help_text="provider, provider/model, or provider/prefix* (e.g. openrouter/anthropic/*).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "model_access_rules"
        ordering = ["pattern", "pk"]
        verbose_name = "model access rule"
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(group__isnull=True))
                | (Q(user__isnull=True) & Q(group__isnull=False)),
                name="model_access_one_subject",
                violation_error_message="A rule is for one user or one group.",
            ),
            models.CheckConstraint(
                condition=Q(effect__in=["allow", "deny"]), name="model_access_effect_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_effect_display()} {self.pattern} for {self.user or self.group}"


class AuditEvent(models.Model):
    """Who did what to which connection or project, and when. Never holds a secret."""

    class Action(models.TextChoices):
        CONNECTED = "connected", "Connected"
        UPDATED = "updated", "Updated"
        DISCONNECTED = "disconnected", "Disconnected"
        REVOKED = "revoked", "Revoked"
        INJECTED = "injected", "Injected into a project"
        REMOVED = "removed", "Removed from a project"
        MIGRATED = "migrated", "Migrated legacy key"
        OAUTH_STARTED = "oauth_started", "OAuth started"
        OAUTH_COMPLETED = "oauth_completed", "OAuth completed"
        OAUTH_FAILED = "oauth_failed", "OAuth failed"
        VALIDATED = "validated", "Validated"
        VALIDATION_FAILED = "validation_failed", "Validation failed"
        EXPIRED = "expired", "Expired"
        REFRESHED = "refreshed", "OAuth tokens refreshed"
        KEY_ROTATION = "key_rotation", "Encryption key rotation"
        ENDPOINT_MOVED = "endpoint_moved", "Endpoint moved (stored key and headers dropped)"
        USED = "used", "Paid for a project's model calls (first of the day)"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    action = models.CharField(max_length=32, choices=Action.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who did it; empty for doce itself (a task, a migration, a command).",
    )
    # Kept as text too, so the log still reads after the user is deleted.
    actor_name = models.CharField(max_length=150, blank=True, default="")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
        help_text="Whose connection or project it was.",
    )
    provider_id = models.CharField(max_length=100, blank=True, default="")
    connection = models.ForeignKey(
        ProviderConnection,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_events",
    )
    # The Project model comes with the projects app; an id keeps this table independent.
    project_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        db_table = "audit_events"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="audit_events_user_idx")]

    def __str__(self) -> str:
        subject = self.provider_id or (f"project {self.project_id}" if self.project_id else "")
        return f"{self.get_action_display()} {subject}".strip()


class CatalogProvider(models.Model):
    """One provider of OpenCode's catalog, trimmed to what doce shows: refreshed from a
    throw-away OpenCode server (``providers.catalog``), never edited by hand."""

    provider_id = models.CharField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    # Popular providers first, then by name: the picker's order.
    position = models.PositiveIntegerField(default=0, db_index=True)
    env = models.JSONField(default=list, blank=True)
    default_model = models.CharField(max_length=255, blank=True, default="")
    # [{"type": "oauth"|"api", "label", "prompts": [...]}]; the index is OpenCode's method.
    auth_methods = models.JSONField(default=list, blank=True)
    opencode_version = models.CharField(max_length=50, blank=True, default="")
    fetched_at = models.DateTimeField()
    # Model ids OpenCode serves without a key (cost 0; the ``opencode`` provider's "Zen"
    # free models): offered to every user when DOCE_FREE_MODELS is on.
    free_models = models.JSONField(default=list, blank=True)
    # Last, as in ProviderConnection: [[model id, display name], ...].
    models = models.JSONField(default=list, blank=True)

    class Meta:
        db_table = "provider_catalog"
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.provider_id


class OAuthFlow(models.Model):
    """One OAuth sign-in, run on its own short-lived OpenCode server (``providers.oauth``).

    Holds no token: on success the tokens go straight from that server's auth.json into
    a ProviderConnection and the server's folder is deleted.
    """

    class State(models.TextChoices):
        STARTING = "starting", "Starting"
        PENDING = "pending", "Waiting for you"
        COMPLETING = "completing", "Completing"
        SUCCEEDED = "succeeded", "Connected"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        EXPIRED = "expired", "Expired"

    ACTIVE_STATES = (State.STARTING, State.PENDING, State.COMPLETING)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oauth_flows"
    )
    provider_id = models.CharField(max_length=100, validators=[validate_provider_id])
    method = models.PositiveSmallIntegerField(help_text="Index into OpenCode's auth methods.")
    method_label = models.CharField(max_length=200, blank=True, default="")
    inputs = models.JSONField(default=dict, blank=True, help_text="Non-secret prompt inputs.")
    kind = models.CharField(max_length=8, blank=True, default="", help_text="auto or code")
    url = models.TextField(blank=True, default="")
    instructions = models.TextField(blank=True, default="")
    state = models.CharField(max_length=16, choices=State.choices, default=State.STARTING)
    error_message = models.TextField(blank=True, default="")
    runtime_state = models.JSONField(default=dict, blank=True)
    server_password = EncryptedTextField(null=True, blank=True)
    data_dir = models.CharField(max_length=500, blank=True, default="")
    connection = models.ForeignKey(
        ProviderConnection, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "provider_oauth_flows"
        verbose_name = "OAuth sign-in"
        verbose_name_plural = "OAuth sign-ins"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["user", "-created_at"], name="oauth_flows_user_idx"),
            models.Index(fields=["state", "expires_at"], name="oauth_flows_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.provider_id} sign-in ({self.get_state_display()})"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES
