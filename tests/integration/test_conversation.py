"""The conversation is doce's: with a real worker (and the recorder it starts), the real
OpenCode binary and a stub LLM that reports usage in its stream, nobody opens the page,
yet the reply, the agent's tool call and the reply's usage land in doce's database; once
the project is stopped and the worker (with its recorder) is gone, the page still shows
the whole conversation, tool call included."""

from __future__ import annotations

import json
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from bench.stub_llm import StubLLM
from projects import services as project_services
from projects.models import Message, Part, Project, Usage
from providers.models import ProviderConnection
from tests.conftest import purge_broker, start_celery_worker, stop_process_group
from tests.integration.conftest import (
    pipeline_report,
    project_running,
    stub_connection,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

REPLY = "Your bakery site is ready."


def test_the_conversation_and_its_usage_outlive_the_server(
    alice, alice_client, tmp_path_factory, cleanup_projects
):
    purge_broker()
    worker = start_celery_worker(tmp_path_factory.mktemp("conversation") / "worker.log")
    try:
        with StubLLM(reply=REPLY, commands={"build": "echo built-by-the-agent"}) as stub:
            connection = stub_connection(alice, stub)
            # The endpoint's declared price (per million tokens) reaches OpenCode's cost.
            ProviderConnection.objects.filter(pk=connection.pk).update(
                prices={"input": "3", "output": "15"}
            )
            project = project_running(alice, "Please [[build]] my bakery site", worker)
            # No page is open: the recorder keeps the reply and what it cost.
            usage = wait_for(
                lambda: list(Usage.objects.filter(project=project)),
                what="the replies' usage, kept by the recorder",
                explain=lambda: pipeline_report(project, worker),
            )
            wait_for(
                lambda: (
                    Message.objects.filter(
                        project=project, role="assistant", completed_at__isnull=False
                    ).count()
                    >= 2
                ),
                what="both replies (the tool call's and the final one), kept",
            )
    finally:
        stop_process_group(worker)

    row = usage[0]
    assert (row.user, row.project, row.provider_id, row.model_id) == (
        alice,
        project,
        "stub",
        "stub-model",
    )
    assert row.connection == connection and row.credential == "your key"
    assert row.input_tokens > 0 and row.output_tokens > 0
    expected = Decimal(row.input_tokens * 3 + row.output_tokens * 15) / 1_000_000
    assert row.priced and abs(row.cost - expected) < Decimal("0.000002"), (row.cost, expected)
    tool = Part.objects.get(message__project=project, kind="tool")
    assert tool.tool == "bash" and "built-by-the-agent" in tool.output

    project_services.server_stop(project=project)
    project.refresh_from_db()
    assert project.status == Project.Status.STOPPED
    page = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert "Please [[build]] my bakery site" in page
    assert REPLY in page
    assert 'data-tool="bash"' in page and "built-by-the-agent" in page
    # Deleting the project keeps what it cost, and takes its conversation.
    spent = Usage.objects.filter(project=project).count()
    project_name = project.name
    Project.objects.filter(pk=project.pk).delete()
    assert Usage.objects.filter(project_name=project_name, project__isnull=True).count() == spent
    assert not Message.objects.filter(project_id=project.pk).exists()


def test_a_spent_budget_refuses_the_next_prompt_before_the_llm_sees_it(
    alice, alice_client, tmp_path_factory, cleanup_projects
):
    """A budget of 10 tokens: the first reply (counted by the recorder) uses it up; the
    next message is refused with which budget, how much and when it resets, and nothing
    reaches the LLM; a new project is refused too."""
    purge_broker()
    worker = start_celery_worker(tmp_path_factory.mktemp("budget") / "worker.log")
    try:
        with StubLLM(reply=REPLY) as stub:
            stub_connection(alice, stub)
            project = project_running(alice, "Build my bakery site", worker)
            wait_for(
                lambda: Usage.objects.filter(project=project).exists(),
                what="the first reply's usage",
            )
            call_command("set_budget", "alice", "--tokens", "10", stdout=StringIO())
            response = alice_client.post(
                f"/projects/{project.pk}/messages/", {"text": "Add a contact page"}, follow=True
            )
            page = response.content.decode()
            assert "monthly token budget" in page and "used up" in page
            assert "of 10 tokens" in page and "resets on" in page
            created = alice_client.post(
                "/projects/new/", {"prompt": "Another site", "model": "stub/stub-model"}
            )
            assert "monthly token budget" in created.content.decode()
            assert Project.objects.filter(owner=alice).count() == 1
            # The refused message never reached OpenCode, so nor the LLM.
            assert not any("contact page" in json.dumps(r.body) for r in stub.completions())
            assert Message.objects.filter(project=project, role="user").count() == 1
    finally:
        stop_process_group(worker)
