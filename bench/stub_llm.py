"""A stub OpenAI-compatible LLM server that records what it is sent.

OpenCode reaches a provider declared with ``"npm": "@ai-sdk/openai-compatible"`` and
``options.baseURL = stub.base_url``; it calls ``POST /v1/chat/completions`` with
``stream: true`` and sends ``Authorization: Bearer <key>`` for the key set through
``PUT /auth/<provider>`` (no header when none is set). That header is the proof that a
credential reached the provider, so every request is recorded with its headers.

    with StubLLM(reply="Hello") as stub:
        config = stub.provider_config("stub")   # for opencode.json
        ...
        assert stub.authorizations() == ["Bearer sk-1"]

``status`` (e.g. 401) makes every completion fail the way a provider rejecting a key does.

``chunks`` (with ``chunk_interval`` seconds between them) streams the reply in several
pieces, the way a real model does; ``emitted()`` tells when each piece of the agent's
replies (requests that offer tools; OpenCode's title request does not) was written
(``time.monotonic()``), which is how the stream benchmark measures doce's delay.

``commands`` makes it act like an agent's model: a user message that contains
``[[name]]`` is answered with a ``bash`` tool call running ``commands[name]``; the
output OpenCode sends back is recorded (``tool_outputs()``), and the model then replies
with ``reply``. The sandbox tests attack from inside a project this way.
Used by the benchmark commands (``bench_opencode``, ``bench_pipeline``) and the tests.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_MODEL = "stub-model"
HOLD_SECONDS = 120.0  # the longest a held chunk waits (a test that never releases it)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or the raw text when it is not JSON
    at: float = field(default_factory=time.monotonic)

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


class StubLLM:
    """Serves ``/v1/chat/completions`` and ``/v1/models`` on 127.0.0.1 (or ``host``: a
    Docker bridge's address, for containers) in a thread."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        reply: str = "Hello from the stub LLM.",
        status: int = 200,
        model: str = DEFAULT_MODEL,
        delay: float = 0.0,
        commands: dict[str, str] | None = None,
        chunks: list[str] | None = None,
        chunk_interval: float = 0.0,
        hold_last_chunk: threading.Event | None = None,
    ) -> None:
        self.host = host
        self.reply = "".join(chunks) if chunks else reply
        self.chunks = list(chunks) if chunks else None
        self.chunk_interval = chunk_interval
        # Set: the last chunk (and the end of the reply) waits until the event is set
        # (at most HOLD_SECONDS), so a test sees the reply half written, whatever the load.
        self.hold_last_chunk = hold_last_chunk
        self._emitted: list[tuple[str, float]] = []
        self.commands = dict(commands or {})
        self.status = status
        self.model = model
        self.delay = delay
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> StubLLM:
        handler = type("Handler", (_Handler,), {"stub": self})
        self._server = ThreadingHTTPServer((self.host, 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stub-llm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> StubLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what callers read -----------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._server is not None, "StubLLM is not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def completions(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def authorizations(self) -> list[str | None]:
        """The Authorization header of every completion request, in order."""
        return [r.authorization for r in self.completions()]

    def tool_outputs(self) -> list[str]:
        """What came back from every tool call, in order (OpenCode's ``tool`` messages)."""
        outputs = []
        for request in self.completions():
            messages = request.body.get("messages", []) if isinstance(request.body, dict) else []
            if messages and messages[-1].get("role") == "tool":
                outputs.append(_text(messages[-1].get("content")))
        return outputs

    def emitted(self) -> list[tuple[str, float]]:
        """Every streamed reply piece and when it was written, in order."""
        with self._lock:
            return list(self._emitted)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._emitted.clear()

    def provider_config(self, provider_id: str = "stub", name: str = "Stub") -> dict:
        """The opencode.json ``provider`` entry that points OpenCode at this stub."""
        return {
            provider_id: {
                "npm": "@ai-sdk/openai-compatible",
                "name": name,
                "options": {"baseURL": self.base_url},
                "models": {self.model: {"name": "Stub Model"}},
            }
        }

    def _command_for(self, body: Any) -> str | None:
        """The command to run when the conversation ends in a marked user message (and
        the request offers tools: OpenCode's title request does not)."""
        if not self.commands or not isinstance(body, dict) or not body.get("tools"):
            return None
        messages = body.get("messages") or []
        if not messages or messages[-1].get("role") != "user":
            return None
        text = _text(messages[-1].get("content"))
        for name, command in self.commands.items():
            if f"[[{name}]]" in text:
                return command
        return None

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _Handler(BaseHTTPRequestHandler):
    stub: StubLLM
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        pass  # keep test output clean

    def _read_body(self) -> Any:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length).decode() if length else ""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        self.stub._record(RecordedRequest("GET", self.path, _lower(self.headers.items()), None))
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": self.stub.model}]})
        else:
            self._send_json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        body = self._read_body()
        self.stub._record(RecordedRequest("POST", self.path, _lower(self.headers.items()), body))
        if not self.path.endswith("/chat/completions"):
            self._send_json(404, {"error": {"message": "not found"}})
            return
        if self.stub.delay:
            time.sleep(self.stub.delay)
        if self.stub.status != 200:
            self._send_json(
                self.stub.status,
                {
                    "error": {
                        "message": "Incorrect API key provided.",
                        "type": "invalid_request_error",
                        "code": "invalid_api_key",
                    }
                },
            )
            return
        stream = isinstance(body, dict) and body.get("stream")
        command = self.stub._command_for(body)
        if stream and command is not None:
            self._stream_tool_call(command)
        elif stream:
            self._stream_reply(record=bool(body.get("tools")))
        else:
            self._send_json(200, _completion(self.stub.model, self.stub.reply))

    def _stream_reply(self, record: bool = False) -> None:
        model = self.stub.model
        if self.stub.chunks:
            self._stream_pieces(self.stub.chunks, self.stub.chunk_interval, record)
            return
        self._stream(
            [
                _chunk(model, {"role": "assistant", "content": ""}),
                _chunk(model, {"content": self.stub.reply}),
                _chunk(model, {}, finish_reason="stop"),
            ]
        )

    def _stream_pieces(self, pieces: list[str], interval: float, record: bool) -> None:
        """The reply piece by piece, each flushed and its time recorded; a pause before
        each piece so that OpenCode handles them one at a time."""
        model = self.stub.model
        self._start_stream()
        self._write(_chunk(model, {"role": "assistant", "content": ""}))
        for number, piece in enumerate(pieces, 1):
            time.sleep(interval)
            if number == len(pieces) and record and self.stub.hold_last_chunk is not None:
                self.stub.hold_last_chunk.wait(HOLD_SECONDS)
            self._write(_chunk(model, {"content": piece}))
            if record:
                with self.stub._lock:
                    self.stub._emitted.append((piece, time.monotonic()))
        self._write(_chunk(model, {}, finish_reason="stop"))
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _stream_tool_call(self, command: str) -> None:
        model = self.stub.model
        call = {
            "index": 0,
            "id": f"call_{int(time.monotonic() * 1000)}",
            "type": "function",
            "function": {
                "name": "bash",
                "arguments": json.dumps({"command": command, "description": "Run a command"}),
            },
        }
        self._stream(
            [
                _chunk(model, {"role": "assistant", "tool_calls": [call]}),
                _chunk(model, {}, finish_reason="tool_calls"),
            ]
        )

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("connection", "close")
        self.end_headers()

    def _write(self, chunk: dict) -> None:
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.flush()

    def _stream(self, chunks: list[dict]) -> None:
        self._start_stream()
        for chunk in chunks:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True


def _text(content: Any) -> str:
    """A message's content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _lower(items: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}


def _chunk(model: str, delta: dict, finish_reason: str | None = None) -> dict:
    chunk = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if finish_reason:
        chunk["usage"] = _USAGE
    return chunk


def _completion(model: str, text: str) -> dict:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": _USAGE,
    }
