"""Sign-in and catalog servers count toward the bound on OpenCode servers
(doce.capacity): they take a slot while they run, give it back when they end, and are
refused with a clear message, not queued, when doce runs all the servers it can hold."""

from __future__ import annotations

import pytest

from doce import capacity
from doce.models import ServerSlot
from doce.opencode.runtimes import RuntimeFailure
from providers import oauth
from providers.catalog import catalog_entry
from providers.catalog import fetch as catalog_fetch_module
from providers.catalog.fetch import CatalogUnavailable, catalog_fetch
from providers.models import OAuthFlow
from tests.providers.views.fake_runtime import FakeRuntime

pytestmark = pytest.mark.django_db

OTHER = capacity.kind_register("test_other_servers")


@pytest.fixture
def runtime(monkeypatch, settings, tmp_path):
    settings.DOCE_DATA_DIR = tmp_path
    settings.DOCE_MAX_SERVERS = 1
    fake = FakeRuntime()
    monkeypatch.setattr(oauth, "_runtime", lambda: fake)
    monkeypatch.setattr(catalog_fetch_module, "LocalRuntime", lambda: fake)
    return fake


def start_flow(user) -> OAuthFlow:
    entry = catalog_entry("github-copilot")
    return oauth.oauth_flow_start(
        user=user, entry=entry, method=entry.oauth_methods[0], inputs={"deploymentType": "x"}
    )


def test_a_sign_in_holds_a_slot_while_it_runs_and_gives_it_back(alice, catalog, runtime):
    flow = start_flow(alice)
    assert oauth.oauth_flow_run(str(flow.pk)) == "pending"
    slot = ServerSlot.objects.get()
    assert (slot.kind, slot.key, slot.state) == (oauth.OAUTH_SERVERS, flow.pk.hex, "held")
    assert slot.runtime_state["data_dir"] == flow.data_dir

    oauth.oauth_flow_cancel(flow=OAuthFlow.objects.get(pk=flow.pk))
    assert not ServerSlot.objects.exists()


def test_a_sign_in_beyond_the_bound_fails_with_a_clear_message(alice, catalog, runtime):
    capacity.slot_take(kind=OTHER, key="busy")
    flow = start_flow(alice)
    assert oauth.oauth_flow_run(str(flow.pk)) == "failed"
    flow.refresh_from_db()
    assert flow.error_message.startswith(
        "The sign-in could not start: doce runs as many OpenCode servers as it can hold"
    )
    assert runtime.started == []
    assert list(ServerSlot.objects.values_list("key", flat=True)) == ["busy"]


def test_a_catalog_read_beyond_the_bound_is_refused_without_starting_a_server(runtime):
    capacity.slot_take(kind=OTHER, key="busy")
    with pytest.raises(CatalogUnavailable, match="as many OpenCode servers as it can hold"):
        catalog_fetch()
    assert runtime.started == []


def test_a_catalog_server_that_fails_gives_its_slot_back(runtime, monkeypatch):
    def fail(spec):
        raise RuntimeFailure("no binary")

    monkeypatch.setattr(runtime, "start", fail)
    with pytest.raises(CatalogUnavailable, match="no binary"):
        catalog_fetch()
    assert not ServerSlot.objects.exists()
