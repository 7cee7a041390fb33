"""The warm pool with everything real: a Celery worker that fills the pool when it
starts, the pinned OpenCode binary (sandboxed as configured) and the stub LLM. A new
project takes the pooled server, reaches the LLM with its owner's key, and the pool gets
a new server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from doce.opencode.runtimes import Layout
from projects import pool
from projects import services as project_services
from projects.models import PooledServer, Project
from tests.conftest import purge_broker, start_celery_worker, stop_process_group
from tests.integration.conftest import (
    FIRST_KEY,
    pipeline_report,
    settled,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def pool_worker(stub, tmp_path, cleanup_projects):
    """A worker with a pool of one; the stub is open to every sandbox, as an operator's
    shared model server would be (DOCE_SANDBOX_ALLOW), so pooled servers can serve it."""
    purge_broker()
    worker = start_celery_worker(
        tmp_path / "worker.log",
        DOCE_POOL_SIZE="1",
        DOCE_SANDBOX_ALLOW=f"127.0.0.1:{stub.port}",
    )
    yield worker
    stop_process_group(worker, graceful=True)  # a refill in flight records its server
    pool.pool_stop_all()


def ready(exclude: str = "") -> PooledServer | None:
    return PooledServer.objects.filter(state=PooledServer.State.READY).exclude(key=exclude).first()


def test_a_new_project_takes_the_pooled_server_and_the_pool_is_refilled(
    client, alice, stub, pool_worker
):
    pooled = wait_for(
        ready,
        what="a ready pooled server",
        explain=lambda: pool_worker.log_path.read_text()[-3000:],
    )
    # Before the claim: a folder of its own, and no credential of anyone's.
    layout = Layout(Path(pooled.data_dir))
    auth = json.loads(layout.auth_file.read_text()) if layout.auth_file.exists() else {}
    assert auth == {}
    stub_connection(alice, stub, api_key=FIRST_KEY)
    client.force_login(alice)

    response = client.post(
        "/projects/new/", {"prompt": "Build a site for my bakery", "model": "stub/stub-model"}
    )

    assert response.status_code == 302
    project = Project.objects.get(owner=alice)
    wait_for(stub.completions, what="the prompt at the LLM")
    assert stub.authorizations()[0] == f"Bearer {FIRST_KEY}"
    wait_for(
        lambda: settled(project),
        what="the pipeline",
        explain=lambda: pipeline_report(project, pool_worker),
    )
    assert project.status == Project.Status.RUNNING, pipeline_report(project, pool_worker)
    # It runs on the pooled server: same process, port and folder.
    assert project.runtime_state["pid"] == pooled.runtime_state["pid"]
    assert project.runtime_state["port"] == pooled.runtime_state["port"]
    assert project.data_dir == pooled.data_dir
    assert json.loads(layout.auth_file.read_text())["stub"]["key"] == FIRST_KEY
    assert not PooledServer.objects.filter(pk=pooled.pk).exists()

    # The pool gets a new server of its own, never the claimed one back.
    fresh = wait_for(
        lambda: ready(exclude=pooled.key),
        what="the pool's replacement",
        explain=lambda: pool_worker.log_path.read_text()[-3000:],
    )
    assert fresh.runtime_state["pid"] != pooled.runtime_state["pid"]
    assert fresh.data_dir != project.data_dir
    project_services.server_stop(project=Project.objects.get(pk=project.pk))
    assert not PooledServer.objects.filter(key=pooled.key).exists()
