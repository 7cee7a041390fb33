"""Naming a host service as an endpoint opens nothing (doce.endpoints), with everything
real: a Celery worker run as an operator would run it (no operator list but one stub's
port, doce's web port known), the pinned OpenCode binary in its sandbox, stub LLMs whose
``[[probe]]`` answer is a bash tool call, the way a prompt-injected agent would probe.

- Alice (an ordinary user) has an endpoint the operator listed: her project works. Rows
  written straight into the database (the form refuses them) name PostgreSQL's and
  Redis's ports, doce's web port and the staff user's server port: her agent can
  connect to none of them.
- Bob (an ordinary user) has an endpoint on an unlisted loopback port: his project fails
  with a message saying who can allow it, and his LLM never hears from it.
- The staff user's Ollama-style endpoint on loopback works end to end; rows of his that
  name doce's own services open nothing either: not even staff may open those.
"""

from __future__ import annotations

import json
import shlex

import pytest
from django.conf import settings

from bench.stub_llm import StubLLM
from projects.models import Project
from providers.models import ProviderConnection
from tests.conftest import purge_broker, start_celery_worker, stop_process_group
from tests.integration.conftest import (
    PROBE,
    pipeline_report,
    probe_listing,
    project_settled,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ASK = "probe"  # the stub answers [[probe]] with the probe as a bash tool call


def _probe_command(targets: dict[str, int]) -> str:
    """The agent's bash command: the shared probe on this machine's loopback ports."""
    listing = probe_listing({label: ("127.0.0.1", port) for label, port in targets.items()})
    return f"python3 -c {shlex.quote(PROBE)} {shlex.quote(listing)}"


def _forced(user, provider_id: str, port: int) -> None:
    """A row the form would refuse, written straight into the database."""
    ProviderConnection.objects.create(
        user=user,
        provider_id=provider_id,
        auth_type="api",
        name=provider_id,
        base_url=f"http://127.0.0.1:{port}/v1",
        models=["m"],
        status="connected",
    )


def _tcp_services() -> dict[str, int]:
    """doce's database and broker ports in this run, when they are TCP services."""
    found = {}
    database = settings.DATABASES["default"]
    if "postgresql" in database["ENGINE"] and database.get("HOST"):
        found["database"] = int(database.get("PORT") or 5432)
    if settings.CELERY_BROKER_URL.startswith("redis://"):
        found["broker"] = int(settings.CELERY_BROKER_URL.split(":")[2].split("/")[0])
    return found


def _opened(stub: StubLLM, project: Project, worker) -> list[str]:
    outputs = wait_for(
        stub.tool_outputs,
        timeout=120,
        what="the probe's output",
        explain=lambda: pipeline_report(project, worker),
    )
    found = json.loads(outputs[-1].strip().splitlines()[-1])
    return sorted(label for label, how in found.items() if how == "OPEN")


def test_host_services_named_as_endpoints_open_nothing(
    alice, bob, admin_user, live_server, tmp_path_factory, cleanup_projects
):
    web_port = int(live_server.url.rsplit(":", 1)[1])
    with (
        StubLLM(reply="Alice probed.", commands={ASK: "true"}) as listed,
        StubLLM(reply="Bob's site.") as unlisted,
        StubLLM(reply="Staff probed.", commands={ASK: "true"}) as ollama,
    ):
        purge_broker()
        worker = start_celery_worker(
            tmp_path_factory.mktemp("containment") / "worker.log",
            DOCE_ENDPOINT_ALLOW=f"127.0.0.1:{listed.port}",
            DOCE_PORT=str(web_port),
        )
        try:
            # Staff: a loopback endpoint nobody listed works end to end...
            stub_connection(admin_user, ollama)
            services = {"web": web_port, **_tcp_services()}
            for label, port in services.items():
                _forced(admin_user, f"forced-{label}", port)
            ollama.commands[ASK] = _probe_command({"own-llm": ollama.port, **services})
            staff = project_settled(admin_user, f"Please [[{ASK}]]", worker)
            assert staff.status == Project.Status.RUNNING, pipeline_report(staff, worker)
            # ... and even staff rows naming doce's own services open nothing.
            assert _opened(ollama, staff, worker) == ["own-llm"]

            # An ordinary user: only what the operator listed; forced rows open nothing.
            stub_connection(alice, listed)
            targets = {
                "postgresql": 5432,
                "redis": 6379,
                "web": web_port,
                "staff-server": staff.runtime_state["port"],
            }
            for label, port in targets.items():
                _forced(alice, f"forced-{label}", port)
            listed.commands[ASK] = _probe_command({"own-llm": listed.port, **targets})
            mine = project_settled(alice, f"Please [[{ASK}]]", worker)
            assert mine.status == Project.Status.RUNNING, pipeline_report(mine, worker)
            assert _opened(listed, mine, worker) == ["own-llm"]

            # An ordinary user's unlisted loopback endpoint: refused, with the reason.
            stub_connection(bob, unlisted)
            refused = project_settled(bob, "Build Bob's site", worker)
            assert refused.status == Project.Status.ERROR, pipeline_report(refused, worker)
            assert "only administrators may use such an endpoint" in refused.error_message
            assert "DOCE_ENDPOINT_ALLOW" in refused.error_message
            assert unlisted.completions() == []
        finally:
            stop_process_group(worker)
