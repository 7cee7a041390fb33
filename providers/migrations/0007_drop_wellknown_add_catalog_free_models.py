"""Drop the "wellknown" auth type, and keep the catalog's free models.

Well-known credentials never worked: nothing could create one, and the body doce would
have sent does not match what OpenCode 1.18.33 keeps (an entry stored under an
organisation's URL, whose ``key`` names an environment variable and whose token comes
from a command the organisation's ``/.well-known/opencode`` document names; see
docs/opencode.md). A connection of that type (only a script or a test could have made
one) is deleted, with a "disconnected" audit event that says why; every other row stays
as it is. Going back re-adds empty columns; the deleted rows do not come back.
"""

from django.conf import settings
from django.db import migrations, models

REASON = "well-known credentials are no longer supported"


def drop_wellknown_connections(apps, schema_editor):
    ProviderConnection = apps.get_model("providers", "ProviderConnection")
    AuditEvent = apps.get_model("providers", "AuditEvent")
    alias = schema_editor.connection.alias
    doomed = ProviderConnection.objects.using(alias).filter(auth_type="wellknown")
    AuditEvent.objects.using(alias).bulk_create(
        AuditEvent(
            action="disconnected",
            actor_name="migration providers.0007",
            user_id=user_id,
            provider_id=provider_id,
            detail={"auth_type": "wellknown", "reason": REASON},
        )
        for user_id, provider_id in doomed.values_list("user_id", "provider_id")
    )
    doomed.delete()


class Migration(migrations.Migration):
    # The data step commits on its own: PostgreSQL refuses to alter a table that still has
    # deferred constraint checks pending from rows deleted in the same transaction.
    atomic = False

    dependencies = [
        ("providers", "0006_catalog_and_oauth_flows"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(drop_wellknown_connections, migrations.RunPython.noop),
        migrations.RemoveConstraint(
            model_name="providerconnection",
            name="provider_connections_auth_type_valid",
        ),
        migrations.RemoveField(
            model_name="providerconnection",
            name="wellknown_key",
        ),
        migrations.RemoveField(
            model_name="providerconnection",
            name="wellknown_token",
        ),
        migrations.AlterField(
            model_name="providerconnection",
            name="auth_type",
            field=models.CharField(
                choices=[("api", "API key"), ("oauth", "OAuth")], default="api", max_length=16
            ),
        ),
        migrations.AddConstraint(
            model_name="providerconnection",
            constraint=models.CheckConstraint(
                condition=models.Q(("auth_type__in", ["api", "oauth"])),
                name="provider_connections_auth_type_valid",
            ),
        ),
        migrations.AddField(
            model_name="catalogprovider",
            name="free_models",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
