"""Benchmark: encryption cost per value and key-rotation throughput.

Never touches real data: rotation runs either on a fresh SQLite file in a temporary
folder (default) or, with ``--database current``, on the configured database inside a
transaction that is rolled back (there each rotation batch is a savepoint, not a commit).
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import time
import tracemalloc
import uuid
from contextlib import contextmanager
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import connections, transaction
from django.db.backends.sqlite3.base import DatabaseWrapper
from django.db.models import Max
from django.test.utils import override_settings

from doce import keyring
from doce.encrypted_fields import EncryptedTextField, rotate_model
from providers.models import ProviderConnection

PROVIDERS_PER_USER = 100
INSERT_BATCH = 5000
BENCH_ALIAS = "bench_credentials"


class _Rollback(Exception):
    pass


class Command(BaseCommand):
    help = "Measure encrypt/decrypt cost per value and key rotation throughput."

    def add_arguments(self, parser):
        parser.add_argument("--connections", type=int, default=100_000, dest="count")
        parser.add_argument("--samples", type=int, default=5_000, help="values per cost figure")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument(
            "--database",
            choices=["temp-sqlite", "current"],
            default="temp-sqlite",
            help="temp-sqlite: a fresh SQLite file, deleted afterwards; current: the "
            "configured database, in a transaction that is rolled back.",
        )

    def handle(self, *args, count: int, samples: int, batch_size: int, database, **opts):
        if count < 1 or samples < 1 or batch_size < 1:
            raise CommandError("--connections, --samples and --batch-size must be positive.")
        old_key, new_key, newer_key = (keyring.generate_key() for _ in range(3))
        self._per_value(samples, old_key, new_key)
        keys = (old_key, new_key, newer_key)
        if database == "temp-sqlite":
            with _temporary_sqlite() as alias:
                self._rotation(alias, count, batch_size, keys, where="a fresh SQLite file")
        else:
            try:
                with transaction.atomic():
                    where = "the configured database, rolled back"
                    self._rotation("default", count, batch_size, keys, where=where)
                    raise _Rollback
            except _Rollback:
                pass

    # --- cost per value -----------------------------------------------------------------

    def _per_value(self, samples: int, old_key: str, new_key: str) -> None:
        values = [f"sk-bench-{secrets.token_urlsafe(40)}" for _ in range(samples)]
        field = EncryptedTextField()
        self.stdout.write(f"Cost per value ({len(values[0])}-character key, {samples} samples):")
        with override_settings(DOCE_ENCRYPTION_KEYS=[old_key]):
            tokens, seconds = _timed(lambda: [keyring.encrypt(v) for v in values])
            self._figure("encrypt", seconds, samples)
            _, seconds = _timed(lambda: [keyring.decrypt(t) for t in tokens])
            self._figure("decrypt", seconds, samples)
            _, seconds = _timed(lambda: [field.from_db_value(t, None, None) for t in tokens])
            self._figure("read through the model field", seconds, samples)
        with override_settings(DOCE_ENCRYPTION_KEYS=[new_key, old_key]):
            _, seconds = _timed(lambda: [keyring.decrypt(t) for t in tokens])
            self._figure("decrypt with the second of two keys", seconds, samples)
            rotated, seconds = _timed(lambda: [keyring.rotate_if_stale(t) for t in tokens])
            self._figure("rotate a stale value", seconds, samples)
            _, seconds = _timed(lambda: [keyring.rotate_if_stale(t) for t in rotated])
            self._figure("check a value already current", seconds, samples)

    def _figure(self, label: str, seconds: float, count: int) -> None:
        self.stdout.write(f"  {label:<40}{seconds / count * 1e6:8.1f} µs")

    # --- rotation throughput ------------------------------------------------------------

    def _rotation(self, alias, count, batch_size, keys, *, where):
        old_key, new_key, newer_key = keys
        names = [
            f.attname
            for f in ProviderConnection._meta.local_concrete_fields
            if isinstance(f, EncryptedTextField)
        ]
        self.stdout.write(f"Rotation of {count} connections ({where}, batches of {batch_size}):")
        with override_settings(DOCE_ENCRYPTION_KEYS=[old_key]):
            first_pk, seconds = _timed(lambda: _create_connections(alias, count))
        self._line("create (bulk insert, encrypting)", seconds, count)
        rows = ProviderConnection.objects.using(alias).filter(pk__gt=first_pk)

        def rotate(dry_run=False):
            return rotate_model(
                ProviderConnection,
                names,
                dry_run=dry_run,
                batch_size=batch_size,
                using=alias,
                queryset=rows,
            )

        with override_settings(DOCE_ENCRYPTION_KEYS=[new_key, old_key]):
            counts, seconds = _timed(lambda: rotate(dry_run=True))
            self._line("dry run (old + new keys)", seconds, count)
            counts, seconds = _timed(rotate)
            self._line(f"rotate old -> new ({counts.rotated} rotated)", seconds, count)
            counts, seconds = _timed(rotate)
            self._line(f"re-run ({counts.current} already current)", seconds, count)
        with override_settings(DOCE_ENCRYPTION_KEYS=[newer_key, new_key]):
            tracemalloc.start()
            counts, _ = _timed(rotate)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        self.stdout.write(
            f"  peak Python memory during a rotation of {counts.rotated} rows "
            f"(tracemalloc): {peak / 2**20:.1f} MiB"
        )

    def _line(self, label: str, seconds: float, count: int) -> None:
        self.stdout.write(f"  {label:<40}{seconds:8.2f} s  {count / seconds:10,.0f} rows/s")


def _timed(function):
    started = time.perf_counter()
    result = function()
    return result, max(time.perf_counter() - started, 1e-9)


def _create_connections(alias: str, count: int) -> int:
    """``count`` API-key connections for throwaway users; the pk they all come after."""
    User = get_user_model()
    first_pk = ProviderConnection.objects.using(alias).aggregate(m=Max("pk"))["m"] or 0
    run = uuid.uuid4().hex[:8]
    users = User.objects.using(alias).bulk_create(
        User(username=f"bench-{run}-{i}", password="!")  # unusable password
        for i in range((count + PROVIDERS_PER_USER - 1) // PROVIDERS_PER_USER)
    )
    if not all(user.pk for user in users):  # backends that do not return ids
        users = list(User.objects.using(alias).filter(username__startswith=f"bench-{run}-"))
    batch = []
    for i in range(count):
        user = users[i // PROVIDERS_PER_USER]
        batch.append(
            ProviderConnection(
                user=user,
                provider_id=f"bench-{i % PROVIDERS_PER_USER}",
                api_key=f"sk-bench-{secrets.token_urlsafe(40)}",
                key_hint="sk-…",
            )
        )
        if len(batch) == INSERT_BATCH:
            ProviderConnection.objects.using(alias).bulk_create(batch)
            batch = []
    ProviderConnection.objects.using(alias).bulk_create(batch)
    return first_pk


@contextmanager
def _temporary_sqlite():
    folder = Path(tempfile.mkdtemp(prefix="doce-bench-"))
    config = {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(folder / "bench.sqlite3"),
        # The same options as doce's own SQLite database.
        "OPTIONS": {
            "transaction_mode": "IMMEDIATE",
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }
    configured = connections.configure_settings({"default": dict(config), BENCH_ALIAS: config})
    # Registered for this thread only (not in connections.settings): a throwaway database
    # that nothing else should find, and that Django's test isolation lets a test use.
    connections[BENCH_ALIAS] = DatabaseWrapper(configured[BENCH_ALIAS], BENCH_ALIAS)
    try:
        call_command("migrate", database=BENCH_ALIAS, verbosity=0, interactive=False)
        yield BENCH_ALIAS
    finally:
        connections[BENCH_ALIAS].close()
        del connections[BENCH_ALIAS]
        shutil.rmtree(folder, ignore_errors=True)
