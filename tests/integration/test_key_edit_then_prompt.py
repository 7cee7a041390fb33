"""A prompt sent right after a key edit is never lost and uses the new key (real worker
re-injecting, real OpenCode, stub LLM recording the Authorization header).

The key edit queues a re-injection job that the worker runs while the prompt goes out
from this process: whichever comes first, the dispose never lands on the prompt, and the
prompt reaches the LLM with the key just saved."""

from __future__ import annotations

import time

import pytest

from projects import services as project_services
from projects.jobs import JobType
from providers.services import connection_update
from queue_jobs.models import Job, JobState
from tests.integration.conftest import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ROUNDS = 5


def _replies(project) -> list[dict]:
    with project_services.project_client(project) as client:
        return [
            m["info"]
            for m in client.messages(project.bootstrap_session_id)
            if m["info"]["role"] == "assistant"
        ]


def _settled(project, count: int):
    """``count`` replies, all finished, and the credential jobs done."""
    replies = _replies(project)
    finished = len(replies) >= count and all(r.get("time", {}).get("completed") for r in replies)
    jobs_done = not Job.objects.filter(
        subject=project,
        type__in=(JobType.REINJECT_CREDENTIALS, JobType.REBUILD_WHEN_IDLE),
        state__in=(JobState.QUEUED, JobState.RUNNING, JobState.RETRYING),
    ).exists()
    return finished and jobs_done


def test_every_prompt_sent_right_after_a_key_edit_reaches_the_llm_with_the_new_key(
    stub,
    running_project,  # noqa: F811 (the fixture imported above)
):
    project, connection = running_project
    latencies = []
    for round_ in range(ROUNDS):
        key = f"sk-stub-round{round_}-" + "0123456789abcdef"
        stub.clear()
        connection_update(connection=connection, api_key=key)  # queues the re-injection
        project.refresh_from_db()
        sent = time.monotonic()
        project_services.message_send(project=project, text=f"Change {round_}")

        completions = wait_for(stub.completions, what=f"round {round_}'s prompt at the LLM")
        latencies.append(completions[0].at - sent)
        wait_for(lambda n=round_ + 2: _settled(project, n), what=f"round {round_}'s reply")
        assert {r.authorization for r in stub.completions()} == {f"Bearer {key}"}, round_
        errors = [r["error"]["name"] for r in _replies(project) if r.get("error")]
        assert errors == [], f"round {round_}: {errors}"

    # The target is 1.2 s (one instance rebuild): measured by bench_pipeline, not
    # asserted here, where a loaded machine can take many times that.
    print("key edit -> prompt at the LLM:", [round(x, 2) for x in latencies])


def test_a_key_edit_while_the_agent_works_does_not_abort_it(stub, running_project):  # noqa: F811
    project, connection = running_project
    stub.clear()
    stub.delay = 4  # the LLM takes its time: the session stays busy
    project_services.message_send(project=project, text="A long change")
    wait_for(stub.completions, what="the long prompt at the LLM")

    key = "sk-stub-during-work-0123456789abcdef"
    connection_update(connection=connection, api_key=key)
    wait_for(
        lambda: Job.objects.filter(
            subject=project, type=JobType.REBUILD_WHEN_IDLE, state=JobState.SUCCEEDED
        ).exists(),
        what="the rebuild put off until the session went idle",
    )
    errors = [r["error"]["name"] for r in _replies(project) if r.get("error")]
    assert errors == []  # the running prompt was not aborted
    assert _settled(project, 2)

    stub.delay = 0
    stub.clear()
    project.refresh_from_db()
    project_services.message_send(project=project, text="Next")
    wait_for(stub.completions, what="the next prompt")
    assert {r.authorization for r in stub.completions()} == {f"Bearer {key}"}
