"""A model field whose value is plaintext in Python and a Fernet token in the database.

Built on ``doce.keyring`` (the only module that touches ``cryptography``). Reading a row
never raises: a value that no configured key opens comes back as an ``Undecryptable``
marker, and saving the row writes that ciphertext back untouched, so restoring the old
key recovers it. ``rotate_encrypted_values`` re-encrypts every such column of every model
with the first key, in batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.apps import apps
from django.core.exceptions import FieldError
from django.db import connections, models, reset_queries, router, transaction
from django.db.models import ExpressionWrapper, F, lookups

from doce import keyring

logger = logging.getLogger(__name__)

UNDECRYPTABLE_MESSAGE = "cannot decrypt: was DOCE_ENCRYPTION_KEYS changed?"


class Secret(str):
    """A decrypted value. Remembers its token so an unchanged value is not re-encrypted
    at every save, and keeps the plaintext out of ``repr`` (tracebacks, debug pages)."""

    token: str | None

    def __new__(cls, plaintext: str, token: str | None = None) -> Secret:
        value = super().__new__(cls, plaintext)
        value.token = token
        return value

    def __repr__(self) -> str:
        return "Secret('…')"

    def __reduce__(self):
        return (Secret, (str(self), self.token))


class Ciphertext:
    """A stored token, written back as it is (an undecryptable value, a copied token)."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.token == self.token

    def __hash__(self) -> int:
        return hash(self.token)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"


class Undecryptable(Ciphertext):
    """A stored token that no configured key opens. Truthy, but not a string: code that
    would put it in a request body fails loudly instead of sending garbage."""

    __slots__ = ()
    message = UNDECRYPTABLE_MESSAGE

    def __str__(self) -> str:
        return "[cannot decrypt]"


def is_undecryptable(value: object) -> bool:
    return isinstance(value, Undecryptable)


class _EmptyOnlyExact(lookups.Exact):
    """``field=None`` and ``field=""`` still work (both are stored as they are); any other
    value would be compared with a fresh, different token and never match, so it is an
    error rather than a silently empty result."""

    def get_prep_lookup(self):
        if self.rhs not in (None, ""):
            raise FieldError(
                f"{self.lhs.output_field.name}: an encrypted field can only be compared "
                "with None or '' (each encryption of a value gives a different token)."
            )
        return super().get_prep_lookup()


class EncryptedTextField(models.TextField):
    """Text stored as a Fernet token; ``None`` and ``""`` are stored as they are.

    Not editable by default: ModelForms and the admin leave it out, so no form can
    render a secret back into a page.
    """

    description = "Text encrypted with DOCE_ENCRYPTION_KEYS"

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("editable", False)
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        if kwargs.get("editable") is False:
            del kwargs["editable"]
        else:
            kwargs["editable"] = True
        return name, path, args, kwargs

    def from_db_value(self, value, expression, connection):
        return self._open(value)

    def to_python(self, value):
        if value is None or isinstance(value, (Secret, Ciphertext)):
            return value
        value = str(value)
        # A token of ours (dumpdata writes tokens, loaddata reads them back) is kept as
        # a token rather than being encrypted a second time.
        if keyring.looks_encrypted(value):
            opened = self._open(value)
            if isinstance(opened, Secret):
                return opened
        return value

    def get_prep_value(self, value):
        if value is None or value == "":
            return value
        if isinstance(value, Ciphertext):
            return value.token
        if isinstance(value, Secret) and value.token is not None:
            return value.token
        return keyring.encrypt(str(value))

    def value_to_string(self, obj):
        # Serialisers (dumpdata) get the token, never the plaintext.
        return self.get_prep_value(self.value_from_object(obj))

    def get_lookup(self, lookup_name):
        if lookup_name == "isnull":
            return super().get_lookup(lookup_name)
        if lookup_name == "exact":
            return _EmptyOnlyExact
        return None

    def get_transform(self, lookup_name):
        return None

    @staticmethod
    def _open(value):
        if value is None or value == "":
            return value
        try:
            return Secret(keyring.decrypt(value), value)
        except keyring.UndecryptableError:
            if keyring.looks_encrypted(value):
                return Undecryptable(value)
            # Plaintext in an encrypted column (a legacy row restored from a backup):
            # readable, and encrypted at the next save or key rotation.
            return Secret(value, None)


# --- key rotation ----------------------------------------------------------------------

MAX_LISTED = 100  # undecryptable values named one by one in a rotation report


@dataclass
class RotationCounts:
    rotated: int = 0
    current: int = 0
    plaintext: int = 0
    undecryptable: int = 0
    # (model label, primary key, field name) of the first values left as they were
    undecryptable_rows: list[tuple[str, object, str]] = field(default_factory=list)

    def add(self, other: RotationCounts) -> None:
        self.rotated += other.rotated
        self.current += other.current
        self.plaintext += other.plaintext
        self.undecryptable += other.undecryptable
        self.undecryptable_rows.extend(other.undecryptable_rows)
        del self.undecryptable_rows[MAX_LISTED:]


def encrypted_models() -> Iterator[tuple[type[models.Model], list[str]]]:
    """Every installed concrete model with encrypted columns, and those columns' names."""
    for model in apps.get_models():
        if model._meta.proxy or not model._meta.managed:
            continue
        names = [
            f.attname
            for f in model._meta.local_concrete_fields
            if isinstance(f, EncryptedTextField)
        ]
        if names:
            yield model, names


def raw_values(queryset, names: list[str]):
    """The rows' primary keys and stored tokens, bypassing decryption."""
    raw = {
        f"_raw_{name}": ExpressionWrapper(F(name), output_field=models.TextField())
        for name in names
    }
    return queryset.annotate(**raw).values_list("pk", *raw)


def rotate_model(
    model: type[models.Model],
    names: list[str],
    *,
    dry_run: bool = False,
    batch_size: int = 1000,
    using: str | None = None,
    queryset=None,
) -> RotationCounts:
    """Re-encrypt ``names`` of every row of ``model`` (or of ``queryset``) with the first key.

    Walks the table by primary key in batches, each read, re-encrypted and written in its
    own transaction with the rows locked (PostgreSQL; SQLite holds its write lock), so
    memory stays flat, a concurrent edit is never overwritten, and an interrupted run
    keeps every batch it finished. Values already on the first key are skipped, so a
    re-run only does what is left.
    """
    using = using or router.db_for_write(model)
    counts = RotationCounts()
    last_pk = None
    manager = model._base_manager.db_manager(using)
    base = (queryset if queryset is not None else manager.all()).using(using).order_by("pk")
    while True:
        with transaction.atomic(using=using):
            batch = base if last_pk is None else base.filter(pk__gt=last_pk)
            rows = list(raw_values(batch.select_for_update(), names)[:batch_size])
            if not rows:
                break
            last_pk = rows[-1][0]
            changed = []
            for pk, *tokens in rows:
                new_tokens = [
                    _rotate_value(token, counts, (model._meta.label, pk, name))
                    for name, token in zip(names, tokens, strict=True)
                ]
                if new_tokens != tokens:
                    changed.append((*new_tokens, pk))
            if changed and not dry_run:
                _write_tokens(model, names, changed, using)
        # With DEBUG on, Django keeps every query with its parameters: memory would grow
        # with the table (a management command has no request to clear the log).
        reset_queries()
        if len(rows) < batch_size:
            break
    return counts


def _write_tokens(model, names: list[str], rows: list[tuple], using: str) -> None:
    """Write ``rows`` (new tokens..., pk) as they are, in one round trip.

    Raw SQL because ``bulk_update`` builds a CASE expression per row and column, which
    costs ten times the cryptography. PostgreSQL takes one ``UPDATE ... FROM (VALUES ...)``
    (half the time of one UPDATE per row); SQLite, in process, one UPDATE per row.
    """
    connection = connections[using]
    quote = connection.ops.quote_name
    # Only quoted identifiers from the model's metadata go into the SQL; values are params.
    table, pk = quote(model._meta.db_table), quote(model._meta.pk.column)
    columns = [quote(model._meta.get_field(name).column) for name in names]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            row = "(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"
            assignments = ", ".join(f"{column} = v.{column}" for column in columns)
            pk_type = model._meta.pk.db_type(connection)
            per_statement = 60_000 // (len(columns) + 1)  # PostgreSQL takes 65,535 params
            for start in range(0, len(rows), per_statement):
                chunk = rows[start : start + per_statement]
                sql = (
                    f"UPDATE {table} AS t SET {assignments} "  # noqa: S608
                    f"FROM (VALUES {', '.join([row] * len(chunk))}) "
                    f"AS v({', '.join(columns)}, {pk}) WHERE t.{pk} = v.{pk}::{pk_type}"
                )
                cursor.execute(sql, [value for values in chunk for value in values])
        else:
            assignments = ", ".join(f"{column} = %s" for column in columns)
            sql = f"UPDATE {table} SET {assignments} WHERE {pk} = %s"  # noqa: S608
            cursor.executemany(sql, rows)


def _rotate_value(token, counts: RotationCounts, where) -> str | None:
    if token is None or token == "":
        return token
    if not keyring.looks_encrypted(token):
        counts.plaintext += 1
        return keyring.encrypt(token)
    try:
        new_token = keyring.rotate_if_stale(token)
    except keyring.UndecryptableError:
        counts.undecryptable += 1
        if len(counts.undecryptable_rows) < MAX_LISTED:
            counts.undecryptable_rows.append(where)
        return token
    if new_token is None:
        counts.current += 1
        return token
    counts.rotated += 1
    return new_token


def rotate_encrypted_values(
    *, dry_run: bool = False, batch_size: int = 1000, using: str | None = None
) -> dict[str, RotationCounts]:
    """Rotate every encrypted column of every model; counts per model label."""
    return {
        model._meta.label: rotate_model(
            model, names, dry_run=dry_run, batch_size=batch_size, using=using
        )
        for model, names in encrypted_models()
    }


def scrub_sqlite(using: str = "default") -> bool:
    """After plaintext was encrypted in place, rebuild a SQLite file so no old copy of it
    survives in free pages or the write-ahead log. PostgreSQL's dead row versions are not
    reachable through SQL (nor in a dump) and are reclaimed by autovacuum.

    Returns whether it ran: not on other databases, nor inside a transaction (where
    VACUUM cannot run; migration 0005 is non-atomic for that reason).
    """
    connection = connections[using]
    if connection.vendor != "sqlite" or connection.in_atomic_block:
        return False
    with connection.cursor() as cursor:
        cursor.execute("VACUUM")
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return True
