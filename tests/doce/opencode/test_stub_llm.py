"""The stub LLM other tests rely on: it must record headers and speak OpenAI's format."""

from __future__ import annotations

import json
import time

import httpx

from bench.stub_llm import StubLLM


def test_it_streams_a_reply_and_records_the_authorization():
    with StubLLM(reply="Bonjour") as stub:
        messages = [{"role": "user", "content": "hi"}]
        body = {"model": "stub-model", "stream": True, "messages": messages}
        with httpx.stream(
            "POST",
            f"{stub.base_url}/chat/completions",
            json=body,
            headers={"Authorization": "Bearer sk-test-1"},
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert response.headers["content-type"] == "text/event-stream"
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines[:-1]]
        text = "".join(chunk["choices"][0]["delta"].get("content", "") for chunk in chunks)
        assert text == "Bonjour"
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"

        plain = httpx.post(f"{stub.base_url}/chat/completions", json={"stream": False})
        assert plain.json()["choices"][0]["message"]["content"] == "Bonjour"

        assert stub.authorizations() == ["Bearer sk-test-1", None]
        assert stub.completions()[0].body["messages"][0]["content"] == "hi"
        assert stub.provider_config("stub")["stub"]["options"]["baseURL"] == stub.base_url
        stub.clear()
        assert stub.requests == []


def test_it_can_reject_keys_like_a_provider():
    with StubLLM(status=401) as stub:
        response = httpx.post(f"{stub.base_url}/chat/completions", json={"stream": True})
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "invalid_api_key"
        assert len(stub.completions()) == 1


def test_it_streams_a_reply_in_pieces_and_notes_when_each_was_written():
    with StubLLM(chunks=["Once ", "upon ", "a time."], chunk_interval=0.3) as stub:
        arrived = []
        for tools in (None, [{"type": "function"}]):  # OpenCode's title request has none
            body = {"stream": True, "messages": [{"role": "user", "content": "hi"}]}
            if tools:
                body["tools"] = tools
            with httpx.stream("POST", f"{stub.base_url}/chat/completions", json=body) as resp:
                for line in resp.iter_lines():
                    if line.startswith("data: {"):
                        content = json.loads(line[6:])["choices"][0]["delta"].get("content")
                        if content and tools:
                            arrived.append((content, time.monotonic()))
        assert stub.reply == "Once upon a time."
        emitted = stub.emitted()
        assert [piece for piece, _ in emitted] == ["Once ", "upon ", "a time."]
        # Each piece was on the wire on its own, before the next was written.
        assert [piece for piece, _ in arrived] == ["Once ", "upon ", "a time."]
        assert all(a < w for (_, a), (_, w) in zip(arrived, emitted[1:], strict=False))
        stub.clear()
        assert stub.emitted() == []
