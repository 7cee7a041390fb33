"""The server-slot ledger (doce.capacity): the global bound with its first-come queue,
the per-user bound, kinds that are refused rather than queued, and slots of dead
servers freed so a crash never leaks capacity."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psutil
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from django.utils import timezone

from doce import capacity
from doce.models import ServerSlot
from doce.opencode.runtimes import RuntimeState
from tests.conftest import settings_from

pytestmark = pytest.mark.django_db

WAITS = capacity.kind_register("test_waits", per_user=True, waits=True)
REFUSED = capacity.kind_register("test_refused")


@pytest.fixture
def bounds(settings):
    settings.DOCE_MAX_SERVERS = 2
    settings.DOCE_MAX_SERVERS_PER_USER = 5
    return settings


def acquire(key, kind=WAITS, owner=None):
    return capacity.slot_acquire(kind=kind, key=key, owner_id=owner.pk if owner else None)


def test_starts_beyond_the_bound_queue_first_come_first_served(bounds):
    assert acquire("a").granted and acquire("b").granted
    assert acquire("c") == capacity.Decision(granted=False, ahead=0)
    assert acquire("d") == capacity.Decision(granted=False, ahead=1)
    assert acquire("a").granted  # a held slot stays held (a redelivered step)

    capacity.slot_release(kind=WAITS, key="a")
    assert not acquire("d").granted  # one slot is free, but c came first
    assert acquire("c").granted
    assert acquire("d") == capacity.Decision(granted=False, ahead=0)
    assert ServerSlot.objects.filter(state=ServerSlot.State.HELD).count() == 2


def test_a_waiter_that_stopped_asking_holds_nobody_up(bounds):
    acquire("a"), acquire("b"), acquire("c")
    ServerSlot.objects.filter(key="c").update(
        updated_at=timezone.now() - capacity.WAITER_FRESH - timedelta(seconds=1)
    )
    assert acquire("d") == capacity.Decision(granted=False, ahead=0)
    capacity.slot_release(kind=WAITS, key="a")
    assert acquire("d").granted


def test_a_withdrawn_start_leaves_the_queue_but_a_held_slot_stays(bounds):
    acquire("a"), acquire("b"), acquire("c")
    assert capacity.slot_withdraw(kind=WAITS, key="c")
    assert not capacity.slot_withdraw(kind=WAITS, key="a")
    assert acquire("d") == capacity.Decision(granted=False, ahead=0)


def test_a_kind_that_does_not_wait_is_refused_and_never_jumps_the_queue(bounds):
    acquire("a"), acquire("b")
    with pytest.raises(capacity.CapacityFull, match=r"as many OpenCode servers .* \(2\)"):
        capacity.slot_take(kind=REFUSED, key="flow")
    assert not ServerSlot.objects.filter(kind=REFUSED).exists()

    acquire("c")  # waits
    capacity.slot_release(kind=WAITS, key="a")
    with pytest.raises(capacity.CapacityFull):
        capacity.slot_take(kind=REFUSED, key="flow")  # the free slot is c's
    assert acquire("c").granted
    capacity.slot_release(kind=WAITS, key="b")
    capacity.slot_take(kind=REFUSED, key="flow")
    assert ServerSlot.objects.get(kind=REFUSED).state == ServerSlot.State.HELD


def test_a_refused_start_asks_servers_kept_ahead_of_demand_to_give_way(bounds, monkeypatch):
    acquire("a"), acquire("spare")
    stops = []

    def stop_one() -> bool:
        stops.append(1)
        return capacity.slot_release(kind=WAITS, key="spare")  # False once it is gone

    monkeypatch.setattr(capacity, "_YIELDERS", [])
    capacity.yielder_register(stop_one)
    capacity.yielder_register(stop_one)  # registered once

    capacity.slot_take(kind=REFUSED, key="flow")
    assert len(stops) == 1
    with pytest.raises(capacity.CapacityFull):
        capacity.slot_take(kind=REFUSED, key="other")
    assert len(stops) == 2  # asked again, had nothing left


def test_the_per_user_bound_counts_only_the_owners_own_kinds(bounds, alice, bob):
    bounds.DOCE_MAX_SERVERS, bounds.DOCE_MAX_SERVERS_PER_USER = 3, 1
    assert acquire("1", owner=alice).granted
    capacity.slot_take(kind=REFUSED, key="alice-flow", owner_id=alice.pk)  # not per user
    refused = acquire("2", owner=alice)
    assert refused == capacity.Decision(granted=False, user_full=True, user_held=("1",))
    assert ServerSlot.objects.get(key="2").waiting_for == ServerSlot.WaitingFor.USER
    assert acquire("3", owner=bob).granted  # bob's own bound; the user waiter is not ahead
    capacity.slot_release(kind=WAITS, key="1")
    assert acquire("2", owner=alice).granted


def _server_like(directory: Path, *, port: int = 4242) -> subprocess.Popen:
    """A process that looks to the local runtime like an OpenCode server on ``port``."""
    command = [sys.executable, "-c", "import time; time.sleep(60)", "serve", "--port", str(port)]
    return subprocess.Popen(command, cwd=directory)


def _state(process: subprocess.Popen, directory: Path) -> RuntimeState:
    return RuntimeState(
        runtime="local",
        data_dir=str(directory),
        port=4242,
        directory=str(directory),
        pid=process.pid,
        process_started_at=psutil.Process(process.pid).create_time(),
    )


def test_the_slot_of_a_server_that_died_is_freed_when_room_is_needed(bounds, tmp_path):
    acquire("a"), acquire("b")
    dies, lives = _server_like(tmp_path), _server_like(tmp_path)
    try:
        capacity.slot_attach(kind=WAITS, key="a", state=_state(dies, tmp_path))
        capacity.slot_attach(kind=WAITS, key="b", state=_state(lives, tmp_path))
        assert not acquire("c").granted  # both run
        dies.kill()
        dies.wait()
        assert acquire("c").granted  # a's server is gone
        assert not acquire("d").granted  # b's runs
    finally:
        for process in (dies, lives):
            process.kill()
            process.wait()
    assert set(ServerSlot.objects.filter(state="held").values_list("key", flat=True)) == {"b", "c"}


def test_a_slot_whose_server_was_never_recorded_is_freed_after_the_start_timeout(bounds):
    acquire("a"), acquire("b")
    assert not acquire("c").granted
    late = timezone.now() - timedelta(seconds=2 * bounds.DOCE_OPENCODE_START_TIMEOUT + 1)
    ServerSlot.objects.filter(key="a").update(updated_at=late)
    assert acquire("c").granted


def test_unknown_or_conflicting_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown server kind 'nope'"):
        capacity.slot_acquire(kind="nope", key="1")
    assert capacity.kind_register("test_waits", per_user=True, waits=True) == WAITS
    with pytest.raises(ValueError, match="already registered"):
        capacity.kind_register("test_waits")


def test_the_default_bound_comes_from_memory(settings):
    settings.DOCE_MAX_SERVERS = 0
    settings.DOCE_SERVER_MEMORY_MB = 600
    assert capacity.memory_limit(4 * 2**30) == (4096 - capacity.RESERVED_MB) // 600 == 5
    assert capacity.memory_limit(512 * 2**20) == 1  # at least one
    assert capacity.server_limit() == capacity.memory_limit() >= 1
    settings.DOCE_MAX_SERVERS = 7
    assert capacity.server_limit() == 7


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOCE_MAX_SERVERS_PER_USER", "0"),
        ("DOCE_SERVER_MEMORY_MB", "0"),
        ("DOCE_MAX_SERVERS", "-1"),
    ],
)
def test_a_bound_that_makes_no_sense_stops_start_up(tmp_path: Path, name, value):
    with pytest.raises(ImproperlyConfigured, match=f"{name}={value}: use a whole number of at"):
        settings_from(tmp_path, DEBUG="true", **{name: value})


def test_the_admin_counts_the_servers(
    bounds, client, admin_user, alice, django_assert_max_num_queries
):
    for key in ("a", "b", "c"):
        acquire(key, owner=alice)
    client.force_login(admin_user)
    with django_assert_max_num_queries(12):
        html = client.get("/admin/doce/serverslot/").content.decode()
    assert "OpenCode servers: 2 of 2 running, 1 waiting (at most 5 projects per user)" in html
    assert html.count("test_waits") >= 3
    assert client.get("/admin/doce/serverslot/add/").status_code == 403
    slot = ServerSlot.objects.first()  # doce.capacity owns every change, a delete too
    delete = reverse("admin:doce_serverslot_delete", args=[slot.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert ServerSlot.objects.filter(pk=slot.pk).exists()
