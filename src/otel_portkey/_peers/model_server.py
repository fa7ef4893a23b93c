"""A scripted OpenAI-compatible model server on loopback, standing in for the paid LLM provider.

It answers ``POST /v1/chat/completions`` (plain or ``"stream": true`` as server-sent events):
with tools offered it plays the seed agent's script (:mod:`.agent_script`), without tools it
echoes the last user message. Faults can be queued (HTTP status, delay, dropped connection) and
every request is recorded with its headers, so tests can check what the gateway forwarded.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from . import agent_script
from .loopback import LoopbackHandler, LoopbackServer, LoopbackService

MODEL = "gpt-4o"


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the model server received it (header names lowercased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Fault:
    """What to do instead of (or before) answering one request."""

    status: int | None = None  # answer with this HTTP error status
    delay: float = 0.0  # sleep this long first
    drop: bool = False  # close the connection without answering


@dataclass
class _State:
    received: list[ReceivedRequest] = field(default_factory=list)
    faults: deque[Fault] = field(default_factory=deque)
    lock: threading.Lock = field(default_factory=threading.Lock)
    counter: int = 0
    response_headers: dict[str, str] = field(default_factory=dict)
    token_delay: float = 0.0


class ScriptedModelServer(LoopbackService):
    """Run with ``with ScriptedModelServer() as model: ... model.base_url``."""

    thread_name = "scripted-model"

    def __init__(self, port: int = 0) -> None:
        self._state = _State()
        self._server = LoopbackServer(type("Handler", (_Handler,), {"state": self._state}), port)

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def received(self) -> list[ReceivedRequest]:
        """The chat requests received so far, oldest first (a copy)."""
        with self._state.lock:
            return list(self._state.received)

    def clear(self) -> None:
        """Forget received requests, queued faults and extra response headers."""
        with self._state.lock:
            self._state.received.clear()
            self._state.faults.clear()
            self._state.response_headers.clear()
            self._state.token_delay = 0.0

    def stream_slowly(self, seconds_per_token: float) -> None:
        """Pause this long between streamed events (0 to stop), as a real model does between tokens."""
        with self._state.lock:
            self._state.token_delay = seconds_per_token

    def add_response_headers(self, headers: dict[str, str]) -> None:
        """Send these headers with every answer from now on (e.g. gateway-style ``x-portkey-*``)."""
        with self._state.lock:
            self._state.response_headers.update(headers)

    def fail_next(self, count: int = 1, status: int = 429) -> None:
        """Answer the next ``count`` requests with HTTP ``status``."""
        self._queue(count, Fault(status=status))

    def slow_next(self, count: int = 1, seconds: float = 1.0) -> None:
        """Delay the next ``count`` answers by ``seconds``."""
        self._queue(count, Fault(delay=seconds))

    def drop_next(self, count: int = 1) -> None:
        """Close the connection of the next ``count`` requests without answering."""
        self._queue(count, Fault(drop=True))

    def _queue(self, count: int, fault: Fault) -> None:
        with self._state.lock:
            self._state.faults.extend([fault] * count)


def anthropic_message(body: dict[str, Any], number: int) -> dict[str, Any]:
    """An Anthropic Messages API answer echoing the last user text, as the chat route does."""
    texts = []
    for message in body.get("messages") or []:
        content = message.get("content")
        if message.get("role") == "user":
            parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
            texts = [str(part.get("text", "")) for part in parts if isinstance(part, dict)]
    return {
        "id": f"msg_scripted_{number}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model") or MODEL,
        "content": [{"type": "text", "text": "echo: " + " ".join(texts)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 20, "output_tokens": 10},
    }


def completion_message(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message the script gives for a chat request body."""
    messages = body.get("messages") or []
    if body.get("tools"):
        step = agent_script.next_step(messages)
        if isinstance(step, str):
            return {"role": "assistant", "content": step}
        name, arguments = step
        call_id = f"call_{name}_{sum(1 for m in messages if m.get('role') == 'tool')}"
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": name, "arguments": json.dumps(arguments)},
                }
            ],
        }
    user_texts = [m.get("content") for m in messages if m.get("role") == "user"]
    last = user_texts[-1] if user_texts else ""
    return {"role": "assistant", "content": f"echo: {last}"}


class _Handler(LoopbackHandler):
    state: _State

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        with self.state.lock:
            self.state.received.append(
                ReceivedRequest("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            fault = self.state.faults.popleft() if self.state.faults else None
            self.state.counter += 1
            number = self.state.counter
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.drop:
                self.close_connection = True
                self.connection.close()
                return
            if fault.status is not None:
                self._json(
                    fault.status, {"error": {"message": f"scripted fault {fault.status}", "type": "scripted"}}
                )
                return
        if self.path.rstrip("/").endswith("/messages"):  # the Anthropic Messages API, not streamed
            self._json(200, anthropic_message(body, number))
            return
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        message = completion_message(body)
        completion_id = f"chatcmpl-scripted-{number}"
        if body.get("stream"):
            self._stream(completion_id, message)
        else:
            finish = "tool_calls" if message.get("tool_calls") else "stop"
            self._json(
                200,
                {
                    "id": completion_id,
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model") or MODEL,
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
                },
            )

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self.reply(status, json.dumps(payload).encode(), "application/json", self._extra_headers())

    def _extra_headers(self) -> list[tuple[str, str]]:
        with self.state.lock:
            return list(self.state.response_headers.items())

    def _stream(self, completion_id: str, message: dict[str, Any]) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("transfer-encoding", "chunked")
        for name, value in self._extra_headers():
            self.send_header(name, value)
        self.end_headers()
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": MODEL,
        }
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if message.get("tool_calls"):
            deltas.append({"tool_calls": [dict(message["tool_calls"][0], index=0)]})
            finish = "tool_calls"
        else:
            deltas += [{"content": word} for word in _words(message["content"] or "")]
            finish = "stop"
        delay = self.state.token_delay
        for delta in deltas:
            self._chunk(dict(base, choices=[{"index": 0, "delta": delta, "finish_reason": None}]))
            if delay:
                time.sleep(delay)
        self._chunk(dict(base, choices=[{"index": 0, "delta": {}, "finish_reason": finish}]))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _chunk(self, payload: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):  # the client closed the stream early
            self.close_connection = True


def _words(text: str) -> list[str]:
    parts = text.split(" ")
    return [part + (" " if i < len(parts) - 1 else "") for i, part in enumerate(parts)]
