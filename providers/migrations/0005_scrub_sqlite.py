"""SQLite only: rebuild the file so the plaintext legacy keys that 0003 encrypted in place
leave no copy in free pages or the write-ahead log. VACUUM cannot run in a transaction,
hence a migration of its own."""

from django.db import migrations

from doce.encrypted_fields import scrub_sqlite


def scrub(apps, schema_editor):
    scrub_sqlite(schema_editor.connection.alias)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("providers", "0004_migrate_legacy_keys"),
    ]

    operations = [
        migrations.RunPython(scrub, migrations.RunPython.noop, elidable=True),
    ]
