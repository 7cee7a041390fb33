"""Encrypt ``user_settings.openrouter_api_key`` in place (the column stays; the old
system's fallback keeps reading it through the new field).

Runs with the column still a plain TextField in the migration state, so it reads and
writes raw values; ``doce.keyring`` does the cryptography. Idempotent: a value that is
already a Fernet token (ours or not) is left alone. Reversible: going back decrypts.
"""

from django.db import migrations, models, transaction
from django.db.models import Value

import doce.encrypted_fields
from doce import keyring

BATCH_SIZE = 500


def _each_batch(UserSettings, using):
    rows = (
        UserSettings.objects.using(using)
        .filter(openrouter_api_key__isnull=False)
        .exclude(openrouter_api_key="")
        .order_by("pk")
    )
    last_pk = None
    while True:
        batch = rows if last_pk is None else rows.filter(pk__gt=last_pk)
        values = list(batch.values_list("pk", "openrouter_api_key")[:BATCH_SIZE])
        if not values:
            return
        last_pk = values[-1][0]
        yield values


def _write(UserSettings, using, pk, value):
    UserSettings.objects.using(using).filter(pk=pk).update(
        openrouter_api_key=Value(value, output_field=models.TextField())
    )


def encrypt_in_place(apps, schema_editor):
    UserSettings = apps.get_model("providers", "UserSettings")
    using = schema_editor.connection.alias
    for values in _each_batch(UserSettings, using):
        with transaction.atomic(using=using):
            for pk, value in values:
                if not keyring.looks_encrypted(value):
                    _write(UserSettings, using, pk, keyring.encrypt(value))


def decrypt_in_place(apps, schema_editor):
    UserSettings = apps.get_model("providers", "UserSettings")
    using = schema_editor.connection.alias
    for values in _each_batch(UserSettings, using):
        with transaction.atomic(using=using):
            for pk, value in values:
                if keyring.looks_encrypted(value):
                    try:
                        plaintext = keyring.decrypt(value)
                    except keyring.UndecryptableError:
                        continue  # kept as it is: restoring the key recovers it
                    _write(UserSettings, using, pk, plaintext)


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0002_provider_connections"),
    ]

    operations = [
        migrations.RunPython(encrypt_in_place, decrypt_in_place),
        migrations.AlterField(
            model_name="usersettings",
            name="openrouter_api_key",
            field=doce.encrypted_fields.EncryptedTextField(blank=True, null=True),
        ),
    ]
