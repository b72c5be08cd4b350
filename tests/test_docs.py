"""Every ```python block of README.md and docs/*.md runs as written, or is marked as a fragment.

How a block is run (docs/testing.md, "The docs' code blocks", says the same for writers):

- each block in its own ``python`` subprocess (``python -m pytest`` when it defines ``test_*``
  functions: the package's pytest plugin gives it ``sentinel_broker`` and friends), with a
  timeout, in a fresh temporary directory that is also its ``HOME`` and ``XDG_STATE_HOME``
  (so default spool directories are private to the block);
- one embedded broker, started here, serves every block: its address is in
  ``SENTINEL_BROKERS``, and ``localhost:9092`` in a block (the address the docs use) is
  pointed at it;
- one fake OpenAI/Anthropic API (tests/fake_provider.py) serves the blocks that call an LLM:
  ``OPENAI_BASE_URL`` / ``ANTHROPIC_BASE_URL`` point at it, with test API keys, so that
  ``openai.OpenAI()`` in a block works as written;
- after each block, no event id may be in the broker's topics twice (a block that sends
  one event twice, as docs/async.md once did, puts a duplicate in the topic);
- a block preceded by ``<!-- fragment: why -->`` on the line before its fence is not run
  (it needs an LLM client, a TLS broker, names from the text around it...) but must still
  compile; an unmarked block that fails fails its test.
"""

from __future__ import annotations

import ast
import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_provider import FakeProvider
from kafka import KafkaAdminClient  # type: ignore[import-untyped, unused-ignore]

from sentinel_durable.testing import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS_ADDRESS = "localhost:9092"
BLOCK_TIMEOUT_S = 60.0

_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_FRAGMENT = re.compile(r"^\s*<!--\s*fragment\b.*-->\s*$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    source: str
    fragment: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a Markdown file; raises on a fragment marker that marks no such block."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            if _FRAGMENT.match(lines[index]):
                following = _FENCE.match(lines[index + 1]) if index + 1 < len(lines) else None
                if following is None or following["info"].split()[:1] != ["python"]:
                    raise AssertionError(
                        f"{path.name}:{index + 1}: a fragment marker not right before a ```python fence"
                    )
            index += 1
            continue
        fence = opening["fence"]
        end = index + 1
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if opening["info"].split()[:1] == ["python"]:
            fragment = index > 0 and bool(_FRAGMENT.match(lines[index - 1]))
            blocks.append(Block(path, index + 1, "\n".join(lines[index + 1 : end]) + "\n", fragment))
        index = end + 1
    return blocks


BLOCKS = [block for path in DOCUMENTS for block in python_blocks(path)]


def defines_tests(source: str) -> bool:
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        for node in ast.parse(source).body
    )


@pytest.fixture(scope="module")
def docs_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(scope="module")
def docs_llm_api() -> Iterator[FakeProvider]:
    with FakeProvider() as served:
        yield served


def test_the_docs_have_runnable_blocks() -> None:
    """The harness finds blocks (a parser that found none would pass every test below)."""
    runnable = [block.name for block in BLOCKS if not block.fragment]
    assert len(BLOCKS) >= 16
    assert len(runnable) >= 8
    assert "docs/testing.md" in {block.name.rsplit(":", 1)[0] for block in BLOCKS if not block.fragment}


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.fragment], ids=lambda b: b.name)
def test_fragment_compiles(block: Block) -> None:
    compile(block.source, block.name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.fragment], ids=lambda b: b.name)
def test_block_runs(block: Block, docs_broker: EmbeddedBroker, docs_llm_api: FakeProvider, tmp_path: Path) -> None:
    source = block.source.replace(DOCS_ADDRESS, docs_broker.bootstrap_servers)
    if defines_tests(source):
        script = tmp_path / "test_block.py"
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
    else:
        script = tmp_path / "block.py"
        command = [sys.executable, str(script)]
    script.write_text(source)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("SENTINEL_", "PYTEST_"))}
    env |= {
        "SENTINEL_BROKERS": docs_broker.bootstrap_servers,
        "HOME": str(tmp_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "OPENAI_BASE_URL": docs_llm_api.base_url,
        "OPENAI_API_KEY": "test-key",
        "ANTHROPIC_BASE_URL": docs_llm_api.anthropic_base_url,
        "ANTHROPIC_API_KEY": "test-key",
    }
    # A session of its own, so that a block that hangs is stopped with what it started (a
    # pytest block's broker) by its process group id.
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        out, err = process.communicate(timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        pytest.fail(f"{block.name} did not finish within {BLOCK_TIMEOUT_S:g} s; output:\n{out}\n{err}")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, f"{block.name} failed:\n{out}\n{err}"
    assert duplicated_events(docs_broker) == {}, f"{block.name} delivered an event more than once"


def duplicated_events(broker: EmbeddedBroker) -> dict[str, int]:
    """Event ids found more than once in any topic of the broker (every block writes new ids)."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap_servers)
    try:
        topics = [name for name in admin.list_topics() if not name.startswith("__")]
    finally:
        admin.close()
    seen = Counter(json.loads(record.value)["event_id"] for topic in topics for record in broker.read_topic(topic))
    return {event_id: count for event_id, count in seen.items() if count > 1}
