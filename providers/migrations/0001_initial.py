# The legacy schema, exactly as the old system had it: one plaintext OpenRouter key per
# user. Later migrations build the new system on top and encrypt this column in place.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="UserSettings",
            fields=[
                (
                    "user",
                    models.OneToOneField(
                        on_delete=django.db.models.deletion.CASCADE,
                        primary_key=True,
                        related_name="doce_settings",
                        serialize=False,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
                ("openrouter_api_key", models.TextField(blank=True, null=True)),
                ("default_model", models.CharField(blank=True, default="", max_length=255)),
                ("updated_at", models.DateTimeField(auto_now=True)),
            ],
            options={
                "verbose_name": "user settings",
                "verbose_name_plural": "user settings",
                "db_table": "user_settings",
            },
        ),
    ]
