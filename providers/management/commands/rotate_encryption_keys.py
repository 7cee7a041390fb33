"""Re-encrypt every encrypted value with the first key of DOCE_ENCRYPTION_KEYS."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from doce.encrypted_fields import RotationCounts, rotate_encrypted_values, scrub_sqlite
from providers.models import AuditEvent
from providers.services import audit_record


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted value (connections, the legacy OpenRouter column, any "
        "model with an encrypted field) with the first key of DOCE_ENCRYPTION_KEYS. Values "
        "no key can decrypt are reported and left untouched. Safe to re-run and to "
        "interrupt: each batch commits on its own and values already current are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count, write nothing.")
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        keys = len(settings.DOCE_ENCRYPTION_KEYS)
        self.stdout.write(
            f"{'Dry run: counting' if dry_run else 'Re-encrypting'} encrypted values with the "
            f"first of {keys} key(s) in DOCE_ENCRYPTION_KEYS."
        )
        per_model = rotate_encrypted_values(dry_run=dry_run, batch_size=batch_size)
        total = RotationCounts()
        for label, counts in per_model.items():
            self.stdout.write(f"  {label}: {_summary(counts, dry_run)}")
            total.add(counts)
        self.stdout.write(f"Total: {_summary(total, dry_run)}")
        if total.undecryptable:
            self.stdout.write(
                self.style.WARNING(
                    f"{total.undecryptable} value(s) cannot be decrypted with any configured "
                    "key and were left as they are (restore the key that made them to recover "
                    "them):"
                )
            )
            for label, pk, name in total.undecryptable_rows:
                self.stdout.write(f"    {label} pk={pk} {name}")
            if total.undecryptable > len(total.undecryptable_rows):
                self.stdout.write(
                    f"    ... and {total.undecryptable - len(total.undecryptable_rows)} more"
                )
        if dry_run:
            self.stdout.write("Dry run: nothing was written.")
            return
        if total.plaintext:
            scrub_sqlite()
        audit_record(
            action=AuditEvent.Action.KEY_ROTATION,
            actor_name="manage.py rotate_encryption_keys",
            detail={
                "rotated": total.rotated,
                "current": total.current,
                "plaintext_encrypted": total.plaintext,
                "undecryptable": total.undecryptable,
                "keys_configured": keys,
            },
        )
        if total.undecryptable:
            self.stdout.write("Keep the old keys until the values above are recovered or removed.")
        elif keys > 1:
            self.stdout.write(
                self.style.SUCCESS(
                    "Every value now uses the first key: the other keys can be removed from "
                    "DOCE_ENCRYPTION_KEYS."
                )
            )


def _summary(counts: RotationCounts, dry_run: bool) -> str:
    would = "to rotate" if dry_run else "rotated"
    plain = "plaintext to encrypt" if dry_run else "plaintext encrypted"
    return (
        f"{would} {counts.rotated}, already current {counts.current}, "
        f"{plain} {counts.plaintext}, undecryptable {counts.undecryptable}"
    )
