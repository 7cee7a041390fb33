"""Handing a held slot over with its server (``capacity.slot_move``: a pooled server
claimed by a project): the global count stays, the new owner's own bound is checked."""

from __future__ import annotations

import pytest

from doce import capacity
from doce.models import ServerSlot

pytestmark = pytest.mark.django_db

SPARE = capacity.kind_register("test_spare")
OWNED = capacity.kind_register("test_owned", per_user=True, waits=True)


@pytest.fixture
def bounds(settings):
    settings.DOCE_MAX_SERVERS = 2
    settings.DOCE_MAX_SERVERS_PER_USER = 1


def held():
    return {
        (slot.kind, slot.key): (slot.owner_id, slot.counts_for_owner)
        for slot in ServerSlot.objects.filter(state=ServerSlot.State.HELD)
    }


def move(key, to_key, owner):
    return capacity.slot_move(kind=SPARE, key=key, to_kind=OWNED, to_key=to_key, owner_id=owner.pk)


def test_the_slot_moves_with_its_server_even_when_the_bound_is_full(bounds, alice):
    capacity.slot_take(kind=SPARE, key="a")
    capacity.slot_take(kind=SPARE, key="b")
    assert not capacity.slot_acquire(kind=OWNED, key="7", owner_id=alice.pk).granted  # full

    assert move("a", "7", alice).granted

    assert held() == {(SPARE, "b"): (None, False), (OWNED, "7"): (alice.pk, True)}


def test_over_the_owners_bound_nothing_moves(bounds, alice):
    capacity.slot_take(kind=SPARE, key="a")
    assert capacity.slot_acquire(kind=OWNED, key="6", owner_id=alice.pk).granted

    decision = move("a", "7", alice)

    assert not decision.granted and decision.user_full and decision.user_held == ("6",)
    assert held() == {(SPARE, "a"): (None, False), (OWNED, "6"): (alice.pk, True)}


def test_a_target_that_holds_a_slot_keeps_it_and_the_source_is_freed(bounds, alice):
    capacity.slot_take(kind=SPARE, key="a")
    assert capacity.slot_acquire(kind=OWNED, key="7", owner_id=alice.pk).granted

    assert move("a", "7", alice).granted

    assert held() == {(OWNED, "7"): (alice.pk, True)}


def test_a_source_without_a_slot_moves_nothing(bounds, alice):
    assert not move("gone", "7", alice).granted
    assert held() == {}
