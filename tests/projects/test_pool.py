"""The warm pool (projects.pool) on a fake runtime: a claim is atomic and serves one
project once, pooled servers count toward the server bound and give way to projects,
DOCE_POOL_SIZE=0 turns it off. (The real binary: tests/integration/test_warm_pool.py.)"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from io import StringIO
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command
from django.db import connection

from doce import capacity
from doce.models import ServerSlot
from doce.opencode import OpenCodeClient
from doce.opencode.runtimes import LocalRuntime, RuntimeState
from doce.opencode.runtimes.config import write_opencode_config
from projects import pool, steps, tasks
from projects import services as project_services
from projects.capacity import server_slot_take
from projects.models import PooledServer, Project
from providers.catalog.fetch import CATALOG_SERVERS
from providers.oauth import OAUTH_SERVERS

pytestmark = pytest.mark.django_db

PROJECT_KIND = project_services.PROJECT_SERVERS


class FakeRuntime(LocalRuntime):
    """Starts nothing: records starts and removals; its servers answer through
    ``handler`` (an httpx.MockTransport handler)."""

    def __init__(self):
        self.started: list[str] = []
        self.removed: list[int] = []
        self.specs = []
        self.dead: set[int] = set()
        self.handler = opencode

    def start(self, spec):
        spec.layout.prepare()
        write_opencode_config(spec)  # as the real runtimes do
        self.started.append(spec.name)
        self.specs.append(spec)
        port = 41000 + len(self.started)
        return RuntimeState(
            runtime="local",
            data_dir=str(spec.data_dir),
            port=port,
            directory=str(spec.layout.workspace),
            pid=port,
        )

    def is_alive(self, state):
        return state.active and state.pid not in self.dead

    def _listening(self, state):
        return None  # no log to read: the health probe decides

    def stop(self, state):
        return replace(state, active=False, pid=None)

    def remove(self, state):
        self.removed.append(state.port)

    def client(self, state, password, **options):
        return OpenCodeClient(
            state.base_url,
            password,
            directory=state.directory,
            transport=httpx.MockTransport(self.handler),
        )


def opencode(request: httpx.Request) -> httpx.Response:
    """A pooled server's answers: healthy, and its warm-up prompt retries at once."""
    path = request.url.path
    if path == "/global/health":
        return httpx.Response(200, json={"healthy": True})
    if path == "/session" and request.method == "POST":
        return httpx.Response(200, json={"id": "ses_warm"})
    if path == "/session/status":
        return httpx.Response(200, json={"ses_warm": {"type": "retry", "attempt": 1}})
    if path.endswith("/prompt_async"):
        return httpx.Response(204)
    if path.endswith("/message"):
        return httpx.Response(200, json=[])
    return httpx.Response(200, json=True)


@pytest.fixture
def runtime(monkeypatch, settings, tmp_path):
    settings.DOCE_PROJECTS_DIR = tmp_path / "projects"
    settings.DOCE_POOL_SIZE = 1
    settings.DOCE_MAX_SERVERS = 10
    fake = FakeRuntime()
    monkeypatch.setattr(pool, "get_runtime", lambda name=None: fake)
    monkeypatch.setattr(capacity, "get_runtime", lambda name=None: fake)
    monkeypatch.setattr(project_services, "project_runtime", lambda project: fake)
    return fake


def ready_server(runtime: FakeRuntime) -> PooledServer:
    """A pooled server as the fill and the warming leave it."""
    [pk] = pool.pool_fill()[:1] or [None]
    assert pk is not None, "the pool started nothing"
    assert pool.server_warm(pk) is pool.Warm.LATER  # its warm-up prompt is sent
    assert pool.server_warm(pk) is pool.Warm.READY
    return PooledServer.objects.get(pk=pk)


def slots() -> dict[tuple[str, str], int | None]:
    return {
        (slot.kind, slot.key): slot.owner_id
        for slot in ServerSlot.objects.filter(state=ServerSlot.State.HELD)
    }


def test_the_pool_fills_to_its_size_each_server_holding_a_slot(runtime, settings):
    settings.DOCE_POOL_SIZE = 2
    started = pool.pool_fill()
    assert len(started) == 2 and len(runtime.started) == 2
    rows = PooledServer.objects.order_by("pk")
    assert [row.state for row in rows] == [PooledServer.State.STARTING] * 2
    assert set(slots()) == {(pool.POOL_SERVERS, row.key) for row in rows}
    assert pool.pool_fill() == []  # full: nothing more
    for row in rows:  # a folder of its own with a neutral config: no provider, no key
        config = (Path(row.data_dir) / "workspace" / "opencode.json").read_text()
        assert '"provider"' not in config and "apiKey" not in config
        assert not (Path(row.data_dir) / "home/.local/share/opencode/auth.json").exists()


def test_a_pooled_start_is_given_the_ports_other_servers_hold(runtime, settings):
    settings.DOCE_POOL_SIZE = 2
    pool.pool_fill()
    first, second = runtime.specs
    assert first.reserved_ports == frozenset()
    # The second is started after the first's state was recorded: its ports are held.
    held = PooledServer.objects.order_by("pk").first().runtime_state["port"]
    assert held in second.reserved_ports


def test_a_claim_hands_the_server_and_its_slot_to_the_project(runtime, project):
    row = ready_server(runtime)

    assert pool.server_claim(project) is pool.Claim.CLAIMED

    project.refresh_from_db()
    assert project.runtime_state == row.runtime_state
    assert project.data_dir == row.data_dir
    assert str(project.server_password) == str(row.server_password)
    assert project.rebuild_pending  # its neutral instance is disposed before the session
    assert not PooledServer.objects.filter(pk=row.pk).exists()
    assert slots() == {(PROJECT_KIND, str(project.pk)): project.owner_id}


@pytest.mark.django_db(transaction=True)
def test_two_claims_at_once_never_share_a_server(runtime, project, bob, monkeypatch):
    """The first claim holds its transaction open (inside the slot move) until the
    second one has finished, or 2 s passed: the second must not get the same server."""
    ready_server(runtime)
    other = Project.objects.create(
        owner=bob, name="Garage", prompt="p", current_model_provider_id="stub",
        current_model_id="stub-model", server_password="pw-" + "y" * 30,
    )  # fmt: skip
    first_inside, second_done = threading.Event(), threading.Event()
    move = capacity.slot_move
    results: dict[str, pool.Claim] = {}

    def slow_move(**kwargs):
        if kwargs["to_key"] == str(project.pk):
            first_inside.set()
            second_done.wait(2)  # SQLite: the second waits for this write lock meanwhile
        return move(**kwargs)

    def claim(name, target):
        try:
            if name == "second":
                assert first_inside.wait(10)
            results[name] = pool.server_claim(target)
        finally:
            if name == "second":
                second_done.set()
            connection.close()

    monkeypatch.setattr(capacity, "slot_move", slow_move)
    first = threading.Thread(target=claim, args=("first", project))
    first.start()
    second = threading.Thread(target=claim, args=("second", other))
    second.start()
    first.join(30), second.join(30)

    assert results == {"first": pool.Claim.CLAIMED, "second": pool.Claim.NONE}
    project.refresh_from_db(), other.refresh_from_db()
    assert project.runtime_state and not other.runtime_state
    assert not PooledServer.objects.exists()


def test_a_server_serves_one_project_and_a_stopped_project_never_gives_it_back(runtime, project):
    row = ready_server(runtime)
    assert pool.server_claim(project) is pool.Claim.CLAIMED
    project.refresh_from_db()

    project_services.server_stop(project=project)

    assert not PooledServer.objects.exists()  # not returned to the pool
    assert not any(kind == pool.POOL_SERVERS for kind, _ in slots())
    spare = ready_server(runtime)
    project.refresh_from_db()
    # A Start of the stopped project keeps its own folder: it never takes a pooled one.
    assert pool.server_claim(project) is pool.Claim.NONE
    assert PooledServer.objects.get().pk == spare.pk != row.pk


def test_over_the_owners_bound_nothing_moves(runtime, project, settings):
    settings.DOCE_MAX_SERVERS_PER_USER = 1
    row = ready_server(runtime)
    assert capacity.slot_acquire(kind=PROJECT_KIND, key="999", owner_id=project.owner_id).granted

    assert pool.server_claim(project) is pool.Claim.USER_FULL

    assert PooledServer.objects.get(pk=row.pk).state == PooledServer.State.READY
    assert (pool.POOL_SERVERS, row.key) in slots()
    project.refresh_from_db()
    assert not project.runtime_state


def test_the_pool_leaves_a_slot_free_and_gives_way_to_a_project(runtime, project, settings):
    settings.DOCE_MAX_SERVERS = 3
    settings.DOCE_POOL_SIZE = 5
    assert len(pool.pool_fill()) == 2  # the third slot stays free
    assert capacity.slot_acquire(kind=PROJECT_KIND, key="998", owner_id=None).granted
    assert len(slots()) == 3  # the bound is full

    server_slot_take(project)  # a cold start: a pooled server stops for it

    assert (PROJECT_KIND, str(project.pk)) in slots()
    assert len(slots()) == 3 and PooledServer.objects.count() == 1
    assert len(runtime.removed) == 1
    assert pool.pool_fill() == []  # no room: the pool does not take the slot back


def test_pool_size_zero_turns_the_pool_off(runtime, project, settings):
    ready_server(runtime)
    settings.DOCE_POOL_SIZE = 0

    assert pool.server_claim(project) is pool.Claim.NONE
    assert pool.pool_fill() == []

    assert not PooledServer.objects.exists() and not slots()  # the running one stopped
    assert len(runtime.removed) == 1


def test_the_default_size_is_a_small_share_of_the_bound(settings):
    settings.DOCE_POOL_SIZE = None
    for bound, size in ((3, 0), (4, 1), (7, 1), (8, 2), (40, 2)):
        settings.DOCE_MAX_SERVERS = bound
        assert pool.pool_size() == size


def test_warming_waits_for_health_and_removes_a_server_that_died(runtime, settings):
    settings.DOCE_POOL_SIZE = 2
    first, second = pool.pool_fill()
    runtime.handler = lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused"))
    assert pool.server_warm(first) is pool.Warm.LATER  # still starting: ask again

    runtime.dead.add(PooledServer.objects.get(pk=second).runtime_state["pid"])
    assert pool.server_warm(second) is pool.Warm.GONE
    assert not PooledServer.objects.filter(pk=second).exists()

    seen = []

    def answering(request):
        seen.append(f"{request.method} {request.url.path}")
        return opencode(request)

    runtime.handler = answering
    assert pool.server_warm(first) is pool.Warm.LATER
    row = PooledServer.objects.get(pk=first)
    assert row.state == PooledServer.State.WARMING and row.warm_session == "ses_warm"
    config = (Path(row.data_dir) / "workspace" / "opencode.json").read_text()
    assert pool.WARMUP_PROVIDER.base_url in config  # a model nobody answers for
    assert pool.server_warm(first) is pool.Warm.READY
    assert seen == [
        "GET /global/health",
        "POST /session",
        "POST /session/ses_warm/prompt_async",
        "GET /session/status",  # it reached the model (and retries):
        "POST /session/ses_warm/abort",  # stopped,
        "DELETE /session/ses_warm",  # and the session goes
    ]
    assert PooledServer.objects.get(pk=first).warm_session == ""


def test_a_dead_pooled_server_is_removed_and_replaced(runtime, settings):
    settings.DOCE_POOL_SIZE = 2
    pool.pool_fill()
    dead = PooledServer.objects.first()
    runtime.dead.add(dead.runtime_state["pid"])

    assert len(pool.pool_fill()) == 1

    assert not PooledServer.objects.filter(pk=dead.pk).exists()
    assert PooledServer.objects.count() == 2
    assert (pool.POOL_SERVERS, dead.key) not in slots()


def test_a_project_whose_endpoint_the_sandbox_must_open_starts_cold(
    runtime, project, alice_stub, settings
):
    settings.DOCE_SANDBOX = "on"
    ready_server(runtime)
    settings.DOCE_SANDBOX_ALLOW = []
    assert pool.server_claim(project) is pool.Claim.NONE  # 127.0.0.1:9 is not open to it

    settings.DOCE_SANDBOX_ALLOW = ["127.0.0.1:9"]  # every sandbox reaches it
    assert pool.server_claim(project) is pool.Claim.CLAIMED


def test_the_start_step_takes_a_pooled_server_and_writes_the_projects_config(
    runtime, project, alice_stub, monkeypatch, settings, django_capture_on_commit_callbacks
):
    settings.DOCE_SANDBOX = "off"
    refills = []
    monkeypatch.setattr(
        tasks.pool_refill,
        "apply_async",
        lambda args, countdown: refills.append((countdown, args[0] - time.time())),
    )
    row = ready_server(runtime)
    job = type("Job", (), {"subject": project, "attempts": 1})

    with django_capture_on_commit_callbacks(execute=True):
        steps.runtime_up(job)

    project.refresh_from_db()
    assert project.runtime_state["port"] == row.runtime_state["port"]
    assert runtime.started == [f"pool-{row.key}"]  # no cold start
    config = (Path(row.data_dir) / "workspace" / "opencode.json").read_text()
    assert '"model": "stub/stub-model"' in config and '"stub"' in config
    assert refills == []  # not while the project is on its way to the LLM

    Project.objects.filter(pk=project.pk).update(bootstrap_session_id="ses_project")
    project.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        steps.send_initial_prompt(job)
    # The prompt is sent: a replacement, once the CPUs are not busy, within 30 s.
    [(countdown, not_after)] = refills
    assert countdown == pool.REFILL_DELAY_SECONDS
    assert pool.REFILL_DEFER_MAX_SECONDS - 5 < not_after <= pool.REFILL_DEFER_MAX_SECONDS


def test_a_claimed_start_that_fails_asks_for_its_replacement_at_once(
    runtime, project, alice_stub, monkeypatch, settings, django_capture_on_commit_callbacks
):
    """The prompt step, which asks for the replacement, never runs after a failure."""
    settings.DOCE_SANDBOX = "off"
    refills = []
    monkeypatch.setattr(steps.pool_fill, "delay", lambda: refills.append("now"))
    ready_server(runtime)
    job = type("Job", (), {"subject": project, "subject_id": project.pk})
    steps.runtime_up(job)

    with django_capture_on_commit_callbacks(execute=True):
        steps.mark_project_failed(job, steps.StepError("OpenCode refused the credential"))

    assert refills == ["now"]
    project.refresh_from_db()
    assert project.status == Project.Status.ERROR


@pytest.mark.parametrize("kind", [OAUTH_SERVERS, CATALOG_SERVERS])
def test_a_sign_in_or_a_catalog_read_makes_a_pooled_server_give_way(runtime, settings, kind):
    settings.DOCE_MAX_SERVERS = 3
    settings.DOCE_POOL_SIZE = 2
    assert len(pool.pool_fill()) == 2
    assert capacity.slot_acquire(kind=PROJECT_KIND, key="998", owner_id=None).granted

    capacity.slot_take(kind=kind, key="short-lived")  # the bound is full: one gives way

    assert (kind, "short-lived") in slots() and len(slots()) == 3
    assert PooledServer.objects.count() == 1 and len(runtime.removed) == 1
    capacity.slot_take(kind=kind, key="next")
    assert PooledServer.objects.count() == 0
    with pytest.raises(capacity.CapacityFull):  # none left to give way
        capacity.slot_take(kind=kind, key="one-more")


@pytest.mark.parametrize(
    ("busy", "late", "fills"), [(True, False, False), (False, False, True), (True, True, True)]
)
def test_a_replacement_waits_while_the_cpus_are_busy_but_not_past_its_deadline(
    monkeypatch, busy, late, fills
):
    """A burst's prompts are still on their way to the LLM: a server starting then would
    slow them down."""
    filled, retried = [], []
    monkeypatch.setattr(pool, "machine_busy", lambda: busy)
    monkeypatch.setattr(tasks, "pool_fill", lambda: filled.append(1) or 1)
    monkeypatch.setattr(
        tasks.pool_refill, "apply_async", lambda args, countdown: retried.append(countdown)
    )
    not_after = time.time() + (-1 if late else 30)

    tasks.pool_refill(not_after)

    assert filled == ([1] if fills else [])
    assert retried == ([] if fills else [pool.REFILL_RETRY_SECONDS])


def test_the_pool_starts_two_servers_at_a_time(runtime, settings):
    settings.DOCE_POOL_SIZE = 5
    first = pool.pool_fill()
    assert len(first) == 2 and pool.pool_fill() == []  # those two are still starting
    for pk in first:
        pool.server_warm(pk), pool.server_warm(pk)
    assert len(pool.pool_fill()) == 2  # ready: the next two


def test_the_admin_lists_pooled_servers_read_only_without_their_password(client, admin_user):
    row = PooledServer.objects.create(
        key="abc123",
        runtime="local",
        data_dir="/srv/pool-abc123",
        server_password="pool-password-" + "p" * 20,
        runtime_state={"port": 41234, "pid": 4321},
    )
    client.force_login(admin_user)
    pages = ["/admin/projects/pooledserver/", f"/admin/projects/pooledserver/{row.pk}/change/"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert "abc123" in html and "41234" in html
        assert "pool-password" not in html and "gAAAAA" not in html
    assert client.post(f"/admin/projects/pooledserver/{row.pk}/delete/").status_code == 403
    assert client.get("/admin/projects/pooledserver/add/").status_code == 403


def test_stop_servers_stops_the_pool_too(runtime, settings):
    settings.DOCE_POOL_SIZE = 2
    pool.pool_fill()
    out = StringIO()

    call_command("stop_servers", stdout=out)

    assert not PooledServer.objects.exists() and not slots()
    assert len(runtime.removed) == 2
    assert "Stopped 2 server(s) of the warm pool." in out.getvalue()


def test_a_server_removed_while_it_starts_is_stopped_not_left_running(runtime, monkeypatch):
    """doce stopping (pool_stop_all) while a fill starts a server: the row goes before
    the server says where it runs, so the fill itself stops it."""
    start = runtime.start

    def start_while_stopping(spec):
        state = start(spec)
        assert pool.pool_stop_all() == 1
        return state

    monkeypatch.setattr(runtime, "start", start_while_stopping)

    assert pool.pool_fill() == []
    assert len(runtime.started) == 1 and runtime.removed == [41001]
    assert not PooledServer.objects.exists() and not slots()
