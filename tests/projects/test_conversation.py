"""doce's copy of a project's conversation (projects.conversation): what a store keeps,
that it is idempotent and bounded, the usage of finished replies, and the page that
renders from the copy in a constant number of queries whatever its length. The real
binary and the recorder are in tests/integration/test_conversation.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from projects import conversation
from projects.models import Message, Part, Project, Usage
from providers.models import AuditEvent, ProviderConnection

pytestmark = pytest.mark.django_db


def _user(message_id: str, text: str, created: int = 1_000) -> dict:
    return {
        "info": {
            "id": message_id,
            "sessionID": "ses_1",
            "role": "user",
            "time": {"created": created},
        },
        "parts": [{"id": f"prt_{message_id}", "type": "text", "text": text}],
    }


def _reply(message_id: str, *, done: bool = True, parts=None, cost=0.0, created=2_000) -> dict:
    info = {
        "id": message_id,
        "sessionID": "ses_1",
        "role": "assistant",
        "providerID": "stub",
        "modelID": "stub-model",
        "time": {"created": created, **({"completed": created + 500} if done else {})},
        "cost": cost,
        "tokens": {"input": 10, "output": 5, "reasoning": 2, "cache": {"read": 3, "write": 1}},
    }
    return {"info": info, "parts": parts if parts is not None else []}


def _tool(part_id: str, output: str) -> dict:
    return {
        "id": part_id,
        "type": "tool",
        "tool": "bash",
        "callID": "c1",
        "state": {
            "status": "completed",
            "input": {"command": "ls -la"},
            "output": output,
            "title": "List the files",
            "metadata": {},
            "time": {"start": 1, "end": 2},
        },
    }


def test_a_store_keeps_messages_parts_and_tool_calls(project):
    messages = [
        _user("msg_u", "Build it"),
        _reply(
            "msg_a",
            parts=[
                {"id": "prt_s", "type": "step-start"},
                {"id": "prt_r", "type": "reasoning", "text": "thinking", "time": {"start": 1}},
                _tool("prt_t", "index.html\n"),
                {"id": "prt_p", "type": "patch", "hash": "h", "files": ["index.html", "a.css"]},
                {"id": "prt_x", "type": "text", "text": "Done.", "synthetic": False},
                {"id": "prt_y", "type": "text", "text": "(system)", "synthetic": True},
                {"id": "prt_f", "type": "step-finish", "reason": "stop", "cost": 0, "tokens": {}},
            ],
        ),
    ]
    stored = conversation.conversation_store(project=project, messages=messages)
    assert stored.messages == 2
    rows = list(Message.objects.filter(project=project))
    assert [row.role for row in rows] == ["user", "assistant"]
    kinds = list(Part.objects.filter(message=rows[1]).values_list("kind", flat=True))
    assert kinds == ["reasoning", "tool", "patch", "text"]
    tool = Part.objects.get(kind="tool")
    assert (tool.tool, tool.title, tool.status) == ("bash", "List the files", "completed")
    assert '"command": "ls -la"' in tool.input and tool.output == "index.html\n"
    assert Part.objects.get(kind="patch").files == ["index.html", "a.css"]


def test_a_store_is_idempotent_and_writes_only_what_changed(project, django_assert_max_num_queries):
    running = [_user("msg_u", "hi"), _reply("msg_a", done=False, parts=[])]
    conversation.conversation_store(project=project, messages=running)
    finished = [
        _user("msg_u", "hi"),
        _reply("msg_a", parts=[{"id": "prt_x", "type": "text", "text": "Hello"}]),
    ]
    assert conversation.conversation_store(project=project, messages=finished).messages == 1
    assert Part.objects.get(opencode_id="prt_x").text == "Hello"
    # Complete in the copy: a catch-up reads it and writes nothing.
    with django_assert_max_num_queries(1):
        again = conversation.conversation_store(project=project, messages=finished)
    assert again == conversation.Stored()
    assert Message.objects.count() == 2 and Usage.objects.count() == 1


def test_a_prompt_read_before_its_text_gets_its_text_at_the_next_read(project):
    """OpenCode creates the user's message a moment before its text part: a read in
    between must not leave "You" empty for good."""
    early = _user("msg_u", "Build it")
    early["parts"] = []
    conversation.conversation_store(project=project, messages=[early])
    assert not Part.objects.exists()
    assert conversation.conversation_store(project=project, messages=[_user("msg_u", "Build it")])
    assert Part.objects.get().text == "Build it"
    # Now complete: not written again.
    assert (
        conversation.conversation_store(project=project, messages=[_user("msg_u", "Build it")])
        == conversation.Stored()
    )


def test_big_texts_and_outputs_are_cut_with_their_size_kept(project):
    long_text = "é" * (conversation.MAX_TEXT + 10)
    long_output = "x" * (conversation.MAX_TOOL_OUTPUT + 7)
    conversation.conversation_store(
        project=project,
        messages=[
            _reply(
                "msg_a",
                parts=[
                    {"id": "prt_x", "type": "text", "text": long_text},
                    _tool("prt_t", long_output),
                ],
            )
        ],
    )
    text = Part.objects.get(kind="text")
    assert len(text.text) == conversation.MAX_TEXT and text.size == len(long_text)
    tool = Part.objects.get(kind="tool")
    assert len(tool.output) == conversation.MAX_TOOL_OUTPUT
    assert tool.output_size == len(long_output)


def test_a_finished_reply_records_its_usage_once_with_who_paid(project, alice):
    connection = ProviderConnection.objects.create(
        user=alice,
        provider_id="stub",
        auth_type="api",
        name="Stub",
        base_url="http://127.0.0.1:9/v1",
        models=["stub-model"],
    )
    conversation.conversation_store(project=project, messages=[_reply("msg_a", cost=0.25)])
    conversation.conversation_store(project=project, messages=[_reply("msg_a", cost=0.25)])
    usage = Usage.objects.get()
    assert (usage.user, usage.project, usage.project_name) == (alice, project, project.name)
    assert (usage.provider_id, usage.model_id) == ("stub", "stub-model")
    assert (usage.input_tokens, usage.output_tokens, usage.reasoning_tokens) == (10, 5, 2)
    assert (usage.cache_read_tokens, usage.cache_write_tokens) == (3, 1)
    assert usage.cost == Decimal("0.25") and usage.priced
    assert usage.connection == connection and usage.credential == "your key"
    connection.refresh_from_db()
    assert connection.last_used_at == usage.created_at  # the last model call it paid for
    # Audited per project and day, not per reply.
    conversation.conversation_store(project=project, messages=[_reply("msg_b", created=9_000)])
    assert Usage.objects.count() == 2
    used = AuditEvent.objects.filter(action="used", connection=connection, project_id=project.pk)
    assert used.count() == 1


def test_an_endpoint_without_a_price_counts_tokens_with_no_price(project, alice):
    ProviderConnection.objects.create(
        user=alice, provider_id="stub", auth_type="api", name="S", base_url="http://h/v1"
    )
    conversation.conversation_store(project=project, messages=[_reply("msg_a", cost=0)])
    usage = Usage.objects.get()
    assert usage.cost == 0 and not usage.priced and usage.input_tokens == 10


def test_an_unfinished_or_malformed_reply_records_no_usage(project):
    conversation.conversation_store(
        project=project,
        messages=[
            _reply("msg_a", done=False),
            {"info": "not a dict"},
            {"parts": []},
            {"info": {"id": "msg_b", "role": "assistant", "time": {"created": "soon"}}},
        ],
    )
    assert Usage.objects.count() == 0
    assert Message.objects.count() == 2


def test_deleting_the_project_keeps_its_usage_and_drops_its_conversation(project):
    conversation.conversation_store(
        project=project, messages=[_user("msg_u", "hi"), _reply("msg_a")]
    )
    name = project.name
    project.delete()
    assert Message.objects.count() == 0 and Part.objects.count() == 0
    usage = Usage.objects.get()
    assert usage.project is None and usage.project_name == name


def test_a_long_conversation_renders_its_latest_messages_in_constant_queries(
    alice_client, project, django_assert_max_num_queries
):
    """10,000 stored parts: the page shows the latest messages and says how many more
    are kept (the whole conversation on request)."""
    Project.objects.filter(pk=project.pk).update(status=Project.Status.STOPPED)
    now = timezone.now()
    Message.objects.bulk_create(
        Message(
            project=project,
            opencode_id=f"msg_{index:04d}",
            session_id="ses_1",
            role="assistant" if index % 2 else "user",
            created_at=now + timezone.timedelta(seconds=index),
            completed_at=now,
        )
        for index in range(200)
    )
    Part.objects.bulk_create(
        Part(
            message=message,
            opencode_id=f"prt_{message.pk}_{index}",
            position=index,
            kind="text" if index % 5 else "tool",
            text=f"{message.opencode_id} piece {index} ",
            tool="bash" if index % 5 == 0 else "",
        )
        for message in Message.objects.filter(project=project)
        for index in range(50)
    )
    assert Part.objects.filter(message__project=project).count() == 10_000
    with django_assert_max_num_queries(16):
        page = alice_client.get(f"/projects/{project.pk}/").content.decode()
    assert "msg_0199 piece 49" in page and "msg_0000 piece" not in page
    assert f"{200 - conversation.WINDOW} earlier messages kept" in page
    whole = alice_client.get(f"/projects/{project.pk}/?all=1").content.decode()
    assert "msg_0000 piece 1 " in whole and "data-earlier" not in whole
