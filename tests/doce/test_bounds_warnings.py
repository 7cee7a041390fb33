"""doce says loudly when OpenCode servers would run without some of their bounds:
at start-up (system check), in /healthz and on the admin index; with
DOCE_LIMITS=required /healthz reports it down (servers are refused)."""

from __future__ import annotations

import pytest

from doce import checks
from doce.opencode.runtimes import sandbox_bounds, sandbox_limits

MISSING = "memory: the cgroup v1 memory controller is absent"


@pytest.fixture
def no_memory_bound(monkeypatch):
    def create(group):
        group.problems = [MISSING]

    monkeypatch.setattr(sandbox_bounds.ServerGroup, "create", create)
    sandbox_limits._problems.cache_clear()
    yield
    sandbox_limits._problems.cache_clear()


@pytest.fixture
def quick_round_trip(monkeypatch):
    from doce import health

    monkeypatch.setattr(health, "BROKER_ROUND_TRIP_TIMEOUT", 0.5)


def test_the_system_check_warns_at_start_up(no_memory_bound, settings):
    settings.DOCE_LIMITS = "auto"
    [warning] = checks.check_bounds(None)
    assert warning.id == "doce.W012" and MISSING in warning.msg
    settings.DOCE_LIMITS = "required"
    [warning] = checks.check_bounds(None)
    assert warning.id == "doce.W013" and "will not start" in warning.msg


def test_no_warning_when_every_bound_holds(monkeypatch):
    monkeypatch.setattr(sandbox_bounds.ServerGroup, "create", lambda group: None)
    sandbox_limits._problems.cache_clear()
    assert checks.check_bounds(None) == []
    sandbox_limits._problems.cache_clear()


@pytest.mark.django_db
def test_healthz_flags_missing_bounds_for_staff(
    client, admin_user, settings, no_memory_bound, quick_round_trip
):
    client.force_login(admin_user)
    settings.DOCE_LIMITS = "auto"
    bounds = client.get("/healthz").json()["bounds"]
    assert bounds["ok"] is True and bounds["enforced"] is False
    assert MISSING in bounds["warning"]
    settings.DOCE_LIMITS = "required"
    bounds = client.get("/healthz").json()["bounds"]
    assert bounds["ok"] is False and MISSING in bounds["error"]


@pytest.mark.django_db
def test_the_admin_index_warns_while_bounds_are_missing(client, admin_user, no_memory_bound):
    client.force_login(admin_user)
    page = client.get("/admin/").content.decode()
    assert "data-bounds-warning" in page and MISSING in page
