"""The engine becomes generic: a job belongs to a *subject* of the model that
settings.QUEUE_JOBS_SUBJECT_MODEL names (projects.Project), and job types are whatever
the callers register (no choices here). Same table and rows: the column is renamed."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("queue_jobs", "0001_initial"),
        migrations.swappable_dependency(settings.QUEUE_JOBS_SUBJECT_MODEL),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="job", name="queue_jobs_one_active_job_per_type"),
        migrations.RenameField(model_name="job", old_name="project", new_name="subject"),
        migrations.AlterField(
            model_name="job",
            name="subject",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="jobs",
                to=settings.QUEUE_JOBS_SUBJECT_MODEL,
            ),
        ),
        migrations.AlterField(model_name="job", name="type", field=models.CharField(max_length=64)),
        migrations.AddConstraint(
            model_name="job",
            constraint=models.UniqueConstraint(
                condition=models.Q(("state__in", ["queued", "running", "retrying"])),
                fields=("subject", "type"),
                name="queue_jobs_one_active_job_per_type",
            ),
        ),
    ]
