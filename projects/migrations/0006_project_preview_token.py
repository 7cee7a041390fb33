"""The site preview's per-project capability: added nullable, filled with a token of its
own for every existing project, then made unique and required."""

from django.db import migrations, models

import projects.models


def fill_tokens(apps, schema_editor):
    Project = apps.get_model("projects", "Project")
    for project in Project.objects.filter(preview_token__isnull=True).only("pk"):
        Project.objects.filter(pk=project.pk).update(
            preview_token=projects.models.new_preview_token()
        )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0005_conversation_usage"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="preview_token",
            field=models.CharField(max_length=64, null=True),
        ),
        migrations.RunPython(fill_tokens, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="project",
            name="preview_token",
            field=models.CharField(
                default=projects.models.new_preview_token, max_length=64, unique=True
            ),
        ),
    ]
