"""Move every legacy OpenRouter key into an ``openrouter`` connection (see
``providers.legacy``): idempotent, reversible, and the legacy value is never touched."""

from django.db import migrations

from providers.legacy import migrate_legacy_rows, unmigrate_legacy_rows


def forward(apps, schema_editor):
    migrate_legacy_rows(
        UserSettings=apps.get_model("providers", "UserSettings"),
        ProviderConnection=apps.get_model("providers", "ProviderConnection"),
        AuditEvent=apps.get_model("providers", "AuditEvent"),
        using=schema_editor.connection.alias,
        actor_name="migration providers.0004",
    )


def backward(apps, schema_editor):
    unmigrate_legacy_rows(
        UserSettings=apps.get_model("providers", "UserSettings"),
        ProviderConnection=apps.get_model("providers", "ProviderConnection"),
        using=schema_editor.connection.alias,
    )


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0003_encrypt_legacy_keys"),
    ]

    operations = [
        migrations.RunPython(forward, backward),
    ]
