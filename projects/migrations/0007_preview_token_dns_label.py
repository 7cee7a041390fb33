"""Preview tokens become DNS labels (lowercase base32, projects.models.new_preview_token)
so a project's preview can live on a subdomain of its own: every token of the old form
(``secrets.token_urlsafe``: mixed case, ``-`` and ``_``) is replaced. A token is a
capability that "New preview link" rotates anyway: old links show nothing from now on."""

from django.db import migrations

import projects.models


def rotate_old_tokens(apps, schema_editor):
    Project = apps.get_model("projects", "Project")
    for project in Project.objects.only("pk", "preview_token").iterator():
        if not projects.models.is_preview_token(project.preview_token):
            Project.objects.filter(pk=project.pk).update(
                preview_token=projects.models.new_preview_token()
            )


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0006_project_preview_token"),
    ]

    operations = [
        migrations.RunPython(rotate_old_tokens, migrations.RunPython.noop),
    ]
