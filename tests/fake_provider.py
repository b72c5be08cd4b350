"""A local HTTP server that answers like the OpenAI and Anthropic APIs, for driving the real
``openai`` and ``anthropic`` client libraries in tests, examples and benchmarks.

It serves ``POST /v1/chat/completions``, ``POST /v1/responses`` and ``POST /v1/messages``, as
JSON or, when the request says ``"stream": true``, as server-sent events (OpenAI's usage chunk
only when ``stream_options.include_usage`` asks for it, as the API does). The next answers are
scripted on the server (``answer``, ``fail``, ``break_stream_after``); every request body is kept
in ``requests``. Run it as a script to serve on a port until interrupted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "FakeProvider"]


@dataclass
class Answer:
    """What the server says next: ``text`` in ``chunks`` pieces when streamed."""

    text: str = "Kafka is a distributed log."
    model: str | None = None  # None: the model the request named, with a dated suffix
    input_tokens: int = 12
    output_tokens: int = 7
    chunks: int = 3
    finish_reason: str = "stop"  # OpenAI's words; Anthropic's answer says end_turn / max_tokens
    status: int = 200  # 429, 500...: an error body in the provider's shape
    break_after: int | None = None  # streams: drop the connection after this many text chunks


@dataclass
class FakeProvider:
    """``with FakeProvider() as provider:`` serves on ``provider.base_url`` (127.0.0.1, a free port)."""

    port: int = 0
    default: Answer = field(default_factory=Answer)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        provider = self

        class Handler(_Handler):
            owner = provider

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """OpenAI's ``base_url`` (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Anthropic's ``base_url`` (the client adds ``/v1/messages``)."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, **answer: Any) -> Answer:
        """Script the next answer (answers queue; after them, ``default``)."""
        scripted = Answer(**answer)
        with self._lock:
            self._script.append(scripted)
        return scripted

    def fail(self, status: int, times: int = 1) -> None:
        """The next ``times`` answers are errors (the libraries retry 429 and 500 twice by default)."""
        for _ in range(times):
            self.answer(status=status)

    def next_answer(self, request: dict[str, Any]) -> Answer:
        with self._lock:
            self.requests.append(request)
            return self._script.pop(0) if self._script else self.default

    def start(self) -> FakeProvider:
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that hung up: not news
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeProvider
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        request = json.loads(self.rfile.read(length) or b"{}")
        answer = self.owner.next_answer(request)
        api = {"/v1/chat/completions": "chat", "/v1/responses": "responses", "/v1/messages": "messages"}.get(
            self.path.split("?")[0]
        )
        if api is None:
            self._json(404, {"error": {"message": f"no such path {self.path}", "type": "invalid_request_error"}})
            return
        if answer.status != 200:
            self._json(answer.status, _error_body(api, answer.status))
            return
        model = answer.model or f"{request.get('model', 'model')}-2026-01-01"
        if not request.get("stream"):
            self._json(200, _BODIES[api](answer, model))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = _STREAMS[api](answer, model, request)
        for sent, (name, data) in enumerate(events):
            if answer.break_after is not None and sent >= answer.break_after + 1:
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)  # mid-stream: no final chunk, no [DONE]
                return
            text = (
                f"event: {name}\n" if name else ""
            ) + f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n"
            payload = text.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _json(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(payload)


def _pieces(answer: Answer) -> list[str]:
    count = max(1, answer.chunks)
    size = max(1, -(-len(answer.text) // count))
    pieces = [answer.text[i : i + size] for i in range(0, len(answer.text), size)]
    return pieces + [""] * (count - len(pieces))


def _error_body(api: str, status: int) -> dict[str, Any]:
    kind = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}.get(status, "invalid_request_error")
    message = {429: "Rate limit reached for requests", 500: "The server had an error"}.get(status, "error")
    if api == "messages":
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


# -- OpenAI chat completions --------------------------------------------------------------------


def _chat_body(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None},
                "finish_reason": answer.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": _openai_usage(answer),
    }


def _openai_usage(answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def _chat_stream(answer: Answer, model: str, request: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> dict[str, Any]:
        choices = [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": choices, **extra}  # fmt: skip

    pieces = _pieces(answer)
    yield None, chunk({"role": "assistant", "content": ""}, None)
    for piece in pieces[:-1]:
        yield None, chunk({"content": piece}, None)
    yield None, chunk({"content": pieces[-1]}, answer.finish_reason)
    if (request.get("stream_options") or {}).get("include_usage"):
        yield None, {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model,
                     "choices": [], "usage": _openai_usage(answer)}  # fmt: skip
    yield None, "[DONE]"


# -- OpenAI responses -----------------------------------------------------------------------------


def _responses_body(answer: Answer, model: str, text: str | None = None, status: str = "completed") -> dict[str, Any]:
    content = [{"type": "output_text", "text": answer.text if text is None else text, "annotations": []}]
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": [{"type": "message", "id": "msg_fake", "status": status, "role": "assistant", "content": content}],
        "usage": {
            "input_tokens": answer.input_tokens,
            "output_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens_details": {"reasoning_tokens": 0},
        },
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "incomplete_details": None,
        "error": None,
    }


def _responses_stream(answer: Answer, model: str, request: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    started = _responses_body(answer, model, text="", status="in_progress")
    started["output"], started["usage"] = [], None
    item = {"type": "message", "id": "msg_fake", "status": "in_progress", "role": "assistant", "content": []}
    part = {"type": "output_text", "text": "", "annotations": []}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", "item_id": "msg_fake", "output_index": 0, "content_index": 0,
         "part": part},
    ]  # fmt: skip
    for piece in _pieces(answer):
        events.append({"type": "response.output_text.delta", "item_id": "msg_fake", "output_index": 0,
                       "content_index": 0, "delta": piece, "logprobs": []})  # fmt: skip
    done_part = {**part, "text": answer.text}
    events += [
        {"type": "response.output_text.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0,
         "text": answer.text, "logprobs": []},
        {"type": "response.content_part.done", "item_id": "msg_fake", "output_index": 0, "content_index": 0,
         "part": done_part},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {**item, "status": "completed", "content": [done_part]}},
        {"type": "response.completed", "response": _responses_body(answer, model)},
    ]  # fmt: skip
    for number, event in enumerate(events):
        yield event["type"], {**event, "sequence_number": number}


# -- Anthropic messages ---------------------------------------------------------------------------

_STOP = {"stop": "end_turn", "length": "max_tokens"}


def _messages_body(answer: Answer, model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": answer.text}],
        "stop_reason": _STOP.get(answer.finish_reason, answer.finish_reason),
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens},
    }


def _messages_stream(answer: Answer, model: str, request: dict[str, Any]) -> Iterator[tuple[str | None, Any]]:
    start = _messages_body(answer, model)
    start.update(content=[], stop_reason=None, usage={"input_tokens": answer.input_tokens, "output_tokens": 1})
    yield "message_start", {"type": "message_start", "message": start}
    yield "content_block_start", {"type": "content_block_start", "index": 0,
                                  "content_block": {"type": "text", "text": ""}}  # fmt: skip
    for piece in _pieces(answer):
        yield "content_block_delta", {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": piece}}  # fmt: skip
    yield "content_block_stop", {"type": "content_block_stop", "index": 0}
    yield (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP.get(answer.finish_reason, answer.finish_reason), "stop_sequence": None},
            "usage": {"output_tokens": answer.output_tokens},
        },
    )
    yield "message_stop", {"type": "message_stop"}


_BODIES = {"chat": _chat_body, "responses": _responses_body, "messages": _messages_body}
_STREAMS = {"chat": _chat_stream, "responses": _responses_stream, "messages": _messages_stream}


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--chunks", type=int, default=3, help="text pieces of a streamed answer")
    parser.add_argument("--text", default=Answer.text, help="the answer")
    arguments = parser.parse_args()
    with FakeProvider(port=arguments.port, default=Answer(text=arguments.text, chunks=arguments.chunks)) as served:
        print(f"serving OpenAI at {served.base_url}, Anthropic at {served.anthropic_base_url}", flush=True)
        threading.Event().wait()
