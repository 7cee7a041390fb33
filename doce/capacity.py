"""How many OpenCode servers may run at once: a ledger of server slots.

Every server doce starts holds 300-850 MB, so every start takes a slot first and every
stop gives it back. The ledger (``doce.models.ServerSlot``, one row per server) knows
nothing of what a server serves: callers register a *kind* ("project", "oauth_flow",
"catalog", "pool") and say how it is counted:

- every held slot counts toward the global bound, ``server_limit()``
  (``DOCE_MAX_SERVERS``, by default what the machine's memory holds at
  ``DOCE_SERVER_MEMORY_MB`` a server);
- a kind registered ``per_user`` also counts toward its owner's bound,
  ``DOCE_MAX_SERVERS_PER_USER``;
- a kind registered ``waits`` queues when the bound is full (first come, first
  served: a waiter keeps its place while it keeps asking); any other kind is refused at
  once, and never jumps the queue, so short-lived servers cannot starve the waiters;
- servers kept only ahead of demand (the warm pool's) give way: a caller registers a
  function that stops one of them (``yielder_register``), and a start refused by the
  global bound stops one and asks again (``servers_yield``).

A crash never leaks a slot: a slot records where its server runs (``slot_attach``), and
when the ledger looks full it checks those servers and frees the slots of the dead ones
(a slot whose server never got recorded is freed after the start timeout).

    decision = slot_acquire(kind="project", key="42", owner_id=7)
    if decision.granted: start the server, then slot_attach(kind=..., key=..., state=state)
    else: try again later (decision.ahead waiters before this one), or stop something
    ...
    slot_release(kind="project", key="42")
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import psutil
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from doce.models import ServerSlot
from doce.opencode.runtimes import RuntimeFailure, RuntimeState, get_runtime

logger = logging.getLogger(__name__)

# Memory kept for doce itself, its database and its workers when the bound is computed.
RESERVED_MB = 1024
# A waiter that stopped asking this long ago (its job was cancelled or lost) does not
# hold up the queue; after WAITER_FORGET its row goes.
WAITER_FRESH = timedelta(minutes=2)
WAITER_FORGET = timedelta(hours=1)
# An arbitrary constant: the PostgreSQL advisory lock that serialises the ledger.
_LOCK_ID = 0x646F6365


class CapacityFull(Exception):
    """No slot for a kind that does not wait; ``str()`` is the message for the user."""


@dataclass(frozen=True)
class Kind:
    name: str
    per_user: bool = False  # counts toward its owner's bound as well
    waits: bool = False  # queues when full (else refused at once)


_KINDS: dict[str, Kind] = {}
_YIELDERS: list[Callable[[], bool]] = []


def kind_register(name: str, *, per_user: bool = False, waits: bool = False) -> str:
    """Count servers of kind ``name`` (returns the name, for the caller's constant).
    Registering the same kind twice with the same rules is harmless."""
    kind = Kind(name=name, per_user=per_user, waits=waits)
    if _KINDS.get(name, kind) != kind:
        raise ValueError(f"server kind {name!r} is already registered with other rules")
    _KINDS[name] = kind
    return name


def yielder_register(stop_one: Callable[[], bool]) -> None:
    """``stop_one`` stops one server that is only kept ahead of demand and returns True,
    or returns False when it has none: a start that the global bound refuses calls it
    before giving up (or waiting). Registering the same function twice is harmless."""
    if stop_one not in _YIELDERS:
        _YIELDERS.append(stop_one)


def servers_yield() -> bool:
    """Stop one server kept ahead of demand, to make room; False when there is none."""
    return any(stop_one() for stop_one in _YIELDERS)


def _kind(name: str) -> Kind:
    try:
        return _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown server kind {name!r}: register it first") from None


@dataclass(frozen=True)
class Decision:
    """``granted``: start the server. Otherwise ``user_full`` (the owner holds
    ``user_held``, their bound) or the global bound is full with ``ahead`` waiters
    before this one."""

    granted: bool
    ahead: int = 0
    user_full: bool = False
    user_held: tuple[str, ...] = ()


# --- the bounds ------------------------------------------------------------------------
def memory_limit(total_bytes: int | None = None) -> int:
    """How many servers the machine's memory holds (at least one)."""
    total_mb = (total_bytes or psutil.virtual_memory().total) // 2**20
    return max(1, int((total_mb - RESERVED_MB) // settings.DOCE_SERVER_MEMORY_MB))


def server_limit() -> int:
    return settings.DOCE_MAX_SERVERS or memory_limit()


def user_limit() -> int:
    return settings.DOCE_MAX_SERVERS_PER_USER


# --- the ledger ------------------------------------------------------------------------
@contextmanager
def _ledger_lock() -> Iterator[None]:
    """One change of the ledger at a time (SQLite: the write lock that an IMMEDIATE
    transaction takes at BEGIN; PostgreSQL: a transaction-level advisory lock)."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LOCK_ID])
        yield


def slot_acquire(*, kind: str, key: str, owner_id: int | None = None) -> Decision:
    """Take a slot for the server ``kind``/``key`` (idempotent: a held slot stays held).
    Refused: a kind that waits keeps (or takes) its place in the queue."""
    spec = _kind(kind)
    key = str(key)
    now = timezone.now()
    with _ledger_lock():
        row = ServerSlot.objects.filter(kind=kind, key=key).first()
        if row is not None and row.state == ServerSlot.State.HELD:
            return Decision(granted=True)
        decision = _decide(spec, row, owner_id, now)
        if not decision.granted and _free_dead(now):
            decision = _decide(spec, row, owner_id, now)
        if decision.granted:
            ServerSlot.objects.update_or_create(
                kind=kind,
                key=key,
                defaults={
                    "owner_id": owner_id,
                    "counts_for_owner": spec.per_user and owner_id is not None,
                    "state": ServerSlot.State.HELD,
                    "waiting_for": ServerSlot.WaitingFor.NOTHING,
                    "runtime_state": {},
                    "updated_at": now,
                },
                create_defaults={
                    "owner_id": owner_id,
                    "counts_for_owner": spec.per_user and owner_id is not None,
                    "state": ServerSlot.State.HELD,
                    "created_at": now,
                    "updated_at": now,
                },
            )
        elif spec.waits:
            waiting_for = (
                ServerSlot.WaitingFor.USER if decision.user_full else ServerSlot.WaitingFor.SERVER
            )
            ServerSlot.objects.update_or_create(
                kind=kind,
                key=key,
                defaults={"waiting_for": waiting_for, "updated_at": now},
                create_defaults={
                    "owner_id": owner_id,
                    "counts_for_owner": spec.per_user and owner_id is not None,
                    "state": ServerSlot.State.WAITING,
                    "waiting_for": waiting_for,
                    "created_at": now,
                    "updated_at": now,
                },
            )
    return decision


def slot_take(*, kind: str, key: str, owner_id: int | None = None) -> None:
    """``slot_acquire`` for a kind that does not wait: CapacityFull when refused (once
    no server kept ahead of demand is left to give way)."""
    decision = slot_acquire(kind=kind, key=key, owner_id=owner_id)
    while not decision.granted and not decision.user_full and servers_yield():
        decision = slot_acquire(kind=kind, key=key, owner_id=owner_id)
    if not decision.granted:
        raise CapacityFull(
            "doce runs as many OpenCode servers as it can hold right now"
            f" ({server_limit()}). Try again in a few minutes."
        )


def _user_full(spec: Kind, owner_id: int | None) -> Decision | None:
    """The refusal when ``owner_id`` already holds their bound of ``per_user`` slots."""
    if not spec.per_user or owner_id is None:
        return None
    mine = list(
        ServerSlot.objects.filter(
            state=ServerSlot.State.HELD, owner_id=owner_id, counts_for_owner=True
        ).values_list("kind", "key")
    )
    if len(mine) < user_limit():
        return None
    same_kind = tuple(key for kind, key in mine if kind == spec.name)
    return Decision(granted=False, user_full=True, user_held=same_kind)


def _decide(spec: Kind, row: ServerSlot | None, owner_id: int | None, now) -> Decision:
    held = ServerSlot.objects.filter(state=ServerSlot.State.HELD)
    if (refusal := _user_full(spec, owner_id)) is not None:
        return refusal
    waiters = ServerSlot.objects.filter(
        state=ServerSlot.State.WAITING,
        waiting_for=ServerSlot.WaitingFor.SERVER,
        updated_at__gte=now - WAITER_FRESH,
    )
    if row is not None and spec.waits:
        waiters = waiters.filter(created_at__lt=row.created_at).exclude(pk=row.pk)
    ahead = waiters.count()
    free = server_limit() - held.count()
    return Decision(granted=free > ahead, ahead=ahead)


def _free_dead(now) -> int:
    """Free the slots whose server is gone; returns how many."""
    dead = []
    start_grace = timedelta(seconds=2 * settings.DOCE_OPENCODE_START_TIMEOUT)
    for slot in ServerSlot.objects.filter(state=ServerSlot.State.HELD):
        if not slot.runtime_state:
            if slot.updated_at < now - start_grace:  # its starter died before recording it
                dead.append(slot.pk)
            continue
        try:
            state = RuntimeState.from_dict(slot.runtime_state)
            alive = state.active and get_runtime(state.runtime).is_alive(state)
        except (RuntimeFailure, TypeError, ValueError):
            logger.warning("server slot %s: its server could not be checked", slot, exc_info=True)
            continue
        if not alive:
            dead.append(slot.pk)
    forgotten = ServerSlot.objects.filter(
        state=ServerSlot.State.WAITING, updated_at__lt=now - WAITER_FORGET
    )
    freed = ServerSlot.objects.filter(pk__in=dead).delete()[0] + forgotten.delete()[0]
    if dead:
        logger.info("freed %d server slot(s) whose server was gone", len(dead))
    return freed


def slot_attach(*, kind: str, key: str, state: RuntimeState, owner_id: int | None = None) -> None:
    """Record where the slot's server runs, so its slot frees itself if it dies. (A slot
    freed meanwhile as dead is held again: the server does run.)"""
    spec = _kind(kind)
    now = timezone.now()
    if ServerSlot.objects.filter(kind=kind, key=str(key), state=ServerSlot.State.HELD).update(
        runtime_state=state.to_dict(), updated_at=now
    ):
        return
    with _ledger_lock():
        ServerSlot.objects.update_or_create(
            kind=kind,
            key=str(key),
            defaults={
                "state": ServerSlot.State.HELD,
                "waiting_for": ServerSlot.WaitingFor.NOTHING,
                "runtime_state": state.to_dict(),
                "updated_at": now,
            },
            create_defaults={
                "owner_id": owner_id,
                "counts_for_owner": spec.per_user and owner_id is not None,
                "state": ServerSlot.State.HELD,
                "runtime_state": state.to_dict(),
                "created_at": now,
                "updated_at": now,
            },
        )


def slot_move(
    *, kind: str, key: str, to_kind: str, to_key: str, owner_id: int | None = None
) -> Decision:
    """Hand the held slot ``kind``/``key`` over to ``to_kind``/``to_key`` with its server
    (a pooled server that a project claims): the global count does not change, the new
    owner's own bound is checked. Refused (``user_full``), nothing moves. If the target
    already holds a slot, the source's is released; if the source holds none (it was
    freed as dead), the answer is not granted and the caller acquires as usual."""
    spec = _kind(to_kind)
    _kind(kind)
    now = timezone.now()
    with _ledger_lock():
        target = ServerSlot.objects.filter(kind=to_kind, key=str(to_key)).first()
        source = ServerSlot.objects.filter(
            kind=kind, key=str(key), state=ServerSlot.State.HELD
        ).first()
        if target is not None and target.state == ServerSlot.State.HELD:
            if source is not None:
                source.delete()
            return Decision(granted=True)
        if source is None:
            return Decision(granted=False)
        if (refusal := _user_full(spec, owner_id)) is not None:
            return refusal
        if target is not None:  # its place in the queue: the move serves it
            target.delete()
        source.kind, source.key, source.owner_id = to_kind, str(to_key), owner_id
        source.counts_for_owner = spec.per_user and owner_id is not None
        source.waiting_for, source.updated_at = ServerSlot.WaitingFor.NOTHING, now
        source.save()
    return Decision(granted=True)


def slot_release(*, kind: str, key: str) -> bool:
    """The server stopped (or will not start): free its slot, or leave the queue."""
    return bool(ServerSlot.objects.filter(kind=kind, key=str(key)).delete()[0])


def slots_with_servers(kind: str) -> list[tuple[str, RuntimeState]]:
    """(key, state) of each slot of ``kind`` whose server was started (for stopping them
    all: a worker killed mid-way leaves its short-lived servers here)."""
    rows = ServerSlot.objects.filter(kind=kind).exclude(runtime_state={})
    return [(row.key, RuntimeState.from_dict(row.runtime_state)) for row in rows]


def slot_withdraw(*, kind: str, key: str) -> bool:
    """Leave the queue (a start that was cancelled); a held slot stays held."""
    return bool(
        ServerSlot.objects.filter(kind=kind, key=str(key), state=ServerSlot.State.WAITING).delete()[
            0
        ]
    )


@dataclass(frozen=True)
class Usage:
    held: int
    waiting: int
    limit: int
    per_user: int


def usage() -> Usage:
    """What the admin shows: servers running (or starting), starts waiting, bounds."""
    now = timezone.now()
    return Usage(
        held=ServerSlot.objects.filter(state=ServerSlot.State.HELD).count(),
        waiting=ServerSlot.objects.filter(
            state=ServerSlot.State.WAITING, updated_at__gte=now - WAITER_FRESH
        ).count(),
        limit=server_limit(),
        per_user=user_limit(),
    )
