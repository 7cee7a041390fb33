"""OpenCode Zen's free models against the real binary (offline: what doce offers and the
requests it makes, not a reply from OpenCode's service).

- The catalog read from a keyless OpenCode lists exactly the zero-cost Zen models as
  free, and the built-in list names only models that this OpenCode serves keyless.
- A project on a free model, for a user with no connection at all, runs through the real
  pipeline (real worker, real sandboxed server) with no credential put into its server:
  no ``PUT /auth`` (auth.json stays without an ``opencode`` entry, no "injected" event),
  and the server itself counts ``opencode`` as connected.
"""

from __future__ import annotations

import json

import pytest

from projects import services as project_services
from projects.models import Project
from providers.catalog import FREE_PROVIDER_ID, free_models
from providers.catalog.fallback import FALLBACK
from providers.catalog.fetch import catalog_fetch
from providers.models import AuditEvent
from tests.doce.opencode.servers import require_binary
from tests.integration.conftest import pipeline_report, settled, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _zero_cost(model: dict) -> bool:
    cost = model.get("cost") or {}
    return cost.get("input") == 0 and cost.get("output") == 0


def test_the_catalog_of_a_keyless_opencode_has_the_free_models():
    require_binary()
    entries, version = catalog_fetch()
    zen = next(entry for entry in entries if entry["id"] == FREE_PROVIDER_ID)
    assert zen["free_models"], f"OpenCode {version} lists no free Zen model"
    # Keyless, OpenCode lists only the models it serves without a key: all free.
    assert set(zen["free_models"]) == {row[0] for row in zen["models"]}
    built_in = next(entry for entry in FALLBACK if entry["id"] == FREE_PROVIDER_ID)
    assert set(built_in["free_models"]) <= set(zen["free_models"])


def test_a_project_on_a_free_model_runs_with_no_credential(alice, celery_worker_process):
    require_binary()
    model_id = "big-pickle"
    assert model_id in free_models()
    project = project_services.project_create(
        owner=alice, prompt="Build a site for my bakery", model=f"{FREE_PROVIDER_ID}/{model_id}"
    )
    try:
        wait_for(
            lambda: settled(project),
            what="the pipeline",
            explain=lambda: pipeline_report(project, celery_worker_process),
        )
        assert project.status == Project.Status.RUNNING, pipeline_report(project)
        assert project.provider_credentials_set
        auth_file = project_services.runtime_state(project).layout.auth_file
        stored = json.loads(auth_file.read_text()) if auth_file.exists() else {}
        assert FREE_PROVIDER_ID not in stored
        assert not AuditEvent.objects.filter(action=AuditEvent.Action.INJECTED).exists()
        with project_services.project_client(project) as client:
            answer = client.providers()
        assert FREE_PROVIDER_ID in answer["connected"]
        zen = next(p for p in answer["all"] if p["id"] == FREE_PROVIDER_ID)
        assert _zero_cost(zen["models"][model_id])
    finally:
        project_services.server_stop(project=project)
