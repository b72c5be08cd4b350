"""What the LLM integrations cost (issue 14), each beside its baseline measured in the same run.

    .venv/bin/python benchmarks/bench_integrations.py            # 15 rounds: about a minute
    .venv/bin/python benchmarks/bench_integrations.py --rounds 5

1. A stream of 1,000 chunks, instrumented vs not (``client.instrument``):
   - through the real ``openai`` client from the fake provider server (tests/fake_provider.py, in a
     process of its own), rounds alternating instrumented / not, medians compared: the overhead a
     user sees, within the noise of the HTTP and SSE parsing around it;
   - the same 1,000 chunk objects (parsed once, ``openai.types.chat.ChatCompletionChunk``)
     iterated through the stream proxy vs directly: the per-chunk cost alone, without the
     HTTP and JSON noise around it.
2. ``SentinelSpanExporter.export()`` of 10,000 GenAI spans (OpenLLMetry's attributes, with
   content) in batches of 512 (the batch processor's default), vs ``client.send_batch`` of the
   10,000 events they become, in the same batches (the spool's own cost: the floor).

The clients spool with the default durability (``process``) and point at a broker that does not
answer, so the flusher waits in its backoff and does not compete. Figures are medians of the
rounds; nothing here asserts on a timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

import openai  # noqa: E402
from bench_common import unreachable_broker  # noqa: E402
from opentelemetry.sdk.resources import Resource  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402
from opentelemetry.trace import SpanKind  # noqa: E402

import sentinel_durable as sentinel  # noqa: E402
from sentinel_durable.integrations.capture import Capture  # noqa: E402
from sentinel_durable.integrations.llm_calls import OPENAI_CHAT  # noqa: E402
from sentinel_durable.integrations.span_reading import call_of_span  # noqa: E402
from sentinel_durable.integrations.streams import Ending, StreamProxy  # noqa: E402

CHUNKS = 1000
SPANS = 10_000
BATCH = 512
MESSAGES = [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "What is Kafka?"}]


def median_time(run: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def alternating(first: Callable[[], object], second: Callable[[], object], rounds: int) -> tuple[float, float]:
    """Medians of ``first`` and ``second``, run in turn (machine noise hits both alike)."""
    a, b = [], []
    for _ in range(rounds):
        for run, times in ((first, a), (second, b)):
            started = time.perf_counter()
            run()
            times.append(time.perf_counter() - started)
    return statistics.median(a), statistics.median(b)


def offline_client(directory: str) -> sentinel.Client:
    return sentinel.Client(brokers=[unreachable_broker()], topic="bench.integrations", spool_dir=directory,
                           retry_backoff=30.0, max_retry_backoff=60.0)  # fmt: skip


# -- 1. streams ----------------------------------------------------------------------------------


@contextlib.contextmanager
def provider_process(text: str) -> Iterator[str]:
    """The fake provider in a process of its own (in this one it would share the GIL with the
    client being measured); yields its base URL, and stops it by its pid."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, str(TESTS / "fake_provider.py"), "--port", str(port), "--chunks", str(CHUNKS), "--text", text],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the fake provider did not start") from None
                time.sleep(0.05)  # polling a port that is not open yet: nothing to wait on
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.kill()
        server.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bench_streams(rounds: int) -> list[str]:
    rows = []
    text = "x" * CHUNKS
    with provider_process(text) as base_url, tempfile.TemporaryDirectory() as directory:
        client = offline_client(directory)
        plain = openai.OpenAI(base_url=base_url, api_key="k", max_retries=0)
        instrumented = client.instrument(openai.OpenAI(base_url=base_url, api_key="k", max_retries=0), service="bench")

        def read(llm: Any) -> Callable[[], object]:
            def run() -> object:
                stream = llm.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
                return sum(1 for _ in stream)

            return run

        read(plain)(), read(instrumented)()  # warm: connections, imports
        bare, ours = alternating(read(plain), read(instrumented), rounds)
        rows.append(row("stream of 1,000 chunks over HTTP, openai client", ours * 1e3, bare * 1e3, "ms",
                        f"{(ours - bare) / CHUNKS * 1e6:+.2f} µs per chunk (median of {rounds} alternating rounds; "
                        "includes one tracked event per stream)"))  # fmt: skip

        # The proxy alone, over the same chunk objects already parsed.
        chunks = [openai.types.chat.ChatCompletionChunk.model_validate(c) for c in _chat_chunks(text)]
        capture = Capture(client, source="bench", service="bench")

        def direct() -> object:
            return sum(1 for _ in iter(chunks))

        def proxied() -> object:
            proxy = StreamProxy(_Stream(chunks), Ending(capture, OPENAI_CHAT.observer(OPENAI_CHAT.start(
                {"model": "gpt-4o", "messages": MESSAGES}), True), time.perf_counter()))  # fmt: skip
            return sum(1 for _ in proxy)

        bare, ours = alternating(direct, proxied, rounds * 4)
        note = f"{(ours - bare) / CHUNKS * 1e6:.2f} µs per chunk, the stream's one event included"
        rows.append(row("1,000 parsed chunks through the stream proxy", ours * 1e3, bare * 1e3, "ms", note))
        client.close(timeout=0)
    return rows


class _Stream:
    """What the proxy needs of ``openai.Stream``: iteration and close."""

    def __init__(self, chunks: list[Any]) -> None:
        self._iterator: Iterator[Any] = iter(chunks)

    def __next__(self) -> Any:
        return next(self._iterator)

    def close(self) -> None:
        pass


def _chat_chunks(text: str) -> list[dict[str, Any]]:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-2026-01-01"}
    chunks = [{**base, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]} for piece in text]
    chunks[-1]["choices"][0]["finish_reason"] = "stop"
    usage = {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 12 + CHUNKS}
    return [*chunks, {**base, "choices": [], "usage": usage}]


# -- 2. export -------------------------------------------------------------------------------------


def genai_spans(count: int) -> list[Any]:
    tracer = TracerProvider(resource=Resource.create({"service.name": "bench"})).get_tracer("bench")
    spans = []
    for n in range(count):
        made = tracer.start_span("openai.chat", kind=SpanKind.CLIENT, attributes={
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai", "gen_ai.request.model": "gpt-4o",
            "gen_ai.response.model": "gpt-4o-2026-01-01", "gen_ai.response.id": f"chatcmpl-{n}",
            "gen_ai.response.finish_reasons": ("stop",), "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 7,
            "gen_ai.input.messages": json.dumps([
                {"role": "system", "parts": [{"type": "text", "content": "Be terse."}]},
                {"role": "user", "parts": [{"type": "text", "content": f"Q {n}?"}]},
            ]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "finish_reason": "stop",
                                                   "parts": [{"type": "text", "content": "Kafka is a log."}]}]),
        })  # fmt: skip
        made.end()
        spans.append(made)
    return spans


def bench_export(rounds: int) -> list[str]:
    spans = genai_spans(SPANS)
    batches = [spans[i : i + BATCH] for i in range(0, SPANS, BATCH)]
    with tempfile.TemporaryDirectory() as directory:
        client = offline_client(directory)
        exporter = sentinel.SentinelSpanExporter(client)
        capture = Capture(client, source="bench")
        events = [[capture.event(call_of_span(s, "chat")) for s in batch] for batch in batches]

        def export() -> object:
            return [exporter.export(batch) for batch in batches]

        def send_batch() -> object:
            return [client.send_batch(batch) for batch in events]

        export()  # warm
        floor, ours = alternating(send_batch, export, max(3, rounds // 3))
        client.close(timeout=0)
    return [
        row("export() of 10,000 GenAI spans (batches of 512)", SPANS / ours, SPANS / floor, "spans/s",
            f"{ours / SPANS * 1e6:.1f} µs per span; baseline: send_batch of the 10,000 events they make "
            f"({floor / SPANS * 1e6:.1f} µs per event)"),
    ]  # fmt: skip


def row(name: str, ours: float, baseline: float, unit: str, note: str) -> str:
    return f"| {name} | {ours:,.1f} {unit} | {baseline:,.1f} {unit} | {ours / baseline:.2f} | {note} |"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args(argv).rounds
    print("| measurement | ours | baseline (same run) | ours ÷ baseline | note |")
    print("|---|---|---|---|---|")
    for line in [*bench_streams(rounds), *bench_export(rounds)]:
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
