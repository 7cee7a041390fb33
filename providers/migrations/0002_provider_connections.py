"""The new system on top of the legacy schema: provider connections, the audit log, and
the new user settings. The legacy column is left as it is here (0003 encrypts it)."""

import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

import doce.encrypted_fields


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="usersettings",
            name="migration_completed_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name="usersettings",
            name="preferred_provider_id",
            field=models.CharField(blank=True, default="", max_length=100),
        ),
        migrations.AddField(
            model_name="usersettings",
            name="provider_auth_initialized",
            field=models.BooleanField(default=False),
        ),
        migrations.CreateModel(
            name="ProviderConnection",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "provider_id",
                    models.CharField(
                        max_length=100,
                        validators=[
                            django.core.validators.RegexValidator(
                                "^[a-z0-9][a-z0-9._-]{0,99}$",
                                "A provider id is lower-case letters, digits, '.', '_' or '-' (e.g. 'openrouter').",
                            )
                        ],
                    ),
                ),
                (
                    "auth_type",
                    models.CharField(
                        choices=[
                            ("api", "API key"),
                            ("oauth", "OAuth"),
                            ("wellknown", "Well-known"),
                        ],
                        default="api",
                        max_length=16,
                    ),
                ),
                ("api_key", doce.encrypted_fields.EncryptedTextField(blank=True, null=True)),
                (
                    "oauth_access_token",
                    doce.encrypted_fields.EncryptedTextField(blank=True, null=True),
                ),
                (
                    "oauth_refresh_token",
                    doce.encrypted_fields.EncryptedTextField(blank=True, null=True),
                ),
                ("wellknown_key", doce.encrypted_fields.EncryptedTextField(blank=True, null=True)),
                (
                    "wellknown_token",
                    doce.encrypted_fields.EncryptedTextField(blank=True, null=True),
                ),
                ("key_hint", models.CharField(blank=True, default="", max_length=32)),
                ("oauth_expires_at", models.DateTimeField(blank=True, null=True)),
                ("oauth_enterprise_url", models.URLField(blank=True, default="", max_length=500)),
                ("oauth_account_id", models.CharField(blank=True, default="", max_length=255)),
                ("metadata", models.JSONField(blank=True, default=dict)),
                ("name", models.CharField(blank=True, default="", max_length=100)),
                ("base_url", models.URLField(blank=True, default="", max_length=500)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("connected", "Connected"),
                            ("expired", "Expired"),
                            ("error", "Error"),
                            ("revoked", "Revoked"),
                        ],
                        default="connected",
                        max_length=16,
                    ),
                ),
                ("error_message", models.TextField(blank=True, default="")),
                ("last_used_at", models.DateTimeField(blank=True, null=True)),
                ("last_validated_at", models.DateTimeField(blank=True, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "models",
                    models.JSONField(
                        blank=True, default=list, help_text="Model ids, one per entry."
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="provider_connections",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "db_table": "provider_connections",
                "ordering": ["provider_id"],
                "indexes": [
                    models.Index(fields=["user"], name="provider_conn_user_idx"),
                    models.Index(fields=["status"], name="provider_conn_status_idx"),
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "provider_id"),
                        name="provider_connections_user_provider_uniq",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(
                            ("status__in", ["connected", "expired", "error", "revoked"])
                        ),
                        name="provider_connections_status_valid",
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("auth_type__in", ["api", "oauth", "wellknown"])),
                        name="provider_connections_auth_type_valid",
                    ),
                ],
            },
        ),
        migrations.CreateModel(
            name="AuditEvent",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                (
                    "action",
                    models.CharField(
                        choices=[
                            ("connected", "Connected"),
                            ("updated", "Updated"),
                            ("disconnected", "Disconnected"),
                            ("revoked", "Revoked"),
                            ("injected", "Injected into a project"),
                            ("removed", "Removed from a project"),
                            ("migrated", "Migrated legacy key"),
                            ("oauth_started", "OAuth started"),
                            ("oauth_completed", "OAuth completed"),
                            ("oauth_failed", "OAuth failed"),
                            ("validated", "Validated"),
                            ("validation_failed", "Validation failed"),
                            ("expired", "Expired"),
                            ("key_rotation", "Encryption key rotation"),
                        ],
                        max_length=32,
                    ),
                ),
                ("actor_name", models.CharField(blank=True, default="", max_length=150)),
                ("provider_id", models.CharField(blank=True, default="", max_length=100)),
                ("project_id", models.BigIntegerField(blank=True, db_index=True, null=True)),
                ("detail", models.JSONField(blank=True, default=dict)),
                (
                    "actor",
                    models.ForeignKey(
                        blank=True,
                        help_text="Who did it; empty for doce itself (a task, a migration, a command).",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        blank=True,
                        help_text="Whose connection or project it was.",
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="audit_events",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                (
                    "connection",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="audit_events",
                        to="providers.providerconnection",
                    ),
                ),
            ],
            options={
                "db_table": "audit_events",
                "ordering": ["-created_at", "-id"],
                "indexes": [
                    models.Index(fields=["user", "-created_at"], name="audit_events_user_idx"),
                ],
            },
        ),
    ]
