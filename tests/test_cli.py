"""The sentinel-durable command line, against real spool files and a real broker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, BrokerUnderTest, free_port, run_cli
from spool_helpers import leave_spool, records

import sentinel_durable as sentinel
from sentinel_durable.spool import Spool, spool_files


def test_status_shows_counts_per_file_and_total(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leave_spool(tmp_path, 10, dead=2)
    leave_spool(tmp_path, 5)
    code, out, _ = run_cli(capsys, "status", "--spool-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    # No in-flight column: claims only read, so what a live owner has in flight is pending on disk.
    assert lines[1].split()[:4] == ["file", "pending", "dead", "letters"]
    total = next(line for line in lines if line.startswith("total")).split()
    assert total[1:3] == ["13", "2"]
    assert out.count("gone") == 2


def test_status_json_shows_owner_and_quarantined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leave_spool(tmp_path, 3)
    (tmp_path / "spool-00000000000000000001-1-x.db.corrupt-20260101T000000").write_bytes(b"junk")
    with Spool(tmp_path) as live:
        live.put_many(records(4))
        code, out, _ = run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")
    assert code == 0
    document = json.loads(out)
    assert document["total"]["pending"] == 7
    owners = {f["file"]: (f["owner_alive"], f["owner_pid"]) for f in document["files"]}
    assert owners[live.active_path.name] == (True, os.getpid())
    assert sorted(alive for alive, _ in owners.values()) == [False, True]
    assert document["quarantined"] == ["spool-00000000000000000001-1-x.db.corrupt-20260101T000000"]


def test_export_writes_json_lines_in_spool_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = leave_spool(tmp_path / "spool", 5, dead=1).event_ids
    second = leave_spool(tmp_path / "spool", 3).event_ids
    output = tmp_path / "out.jsonl"
    code, _, err = run_cli(capsys, "export", "--spool-dir", str(tmp_path / "spool"), "--output", str(output))
    assert code == 0
    assert "exported 7 events" in err
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["event_id"] for line in lines] == first[1:] + second
    run_cli(capsys, "export", "--spool-dir", str(tmp_path / "spool"), "--output", str(output), "--include-dead-letters")
    assert [json.loads(line)["event_id"] for line in output.read_text().splitlines()] == first + second


def test_dlq_list_requeue_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ids = leave_spool(tmp_path, 6, dead=3).event_ids
    code, out, _ = run_cli(capsys, "dlq", "list", "--spool-dir", str(tmp_path))
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ids[:3]
    assert "MessageSizeTooLargeError" in out
    assert run_cli(capsys, "dlq", "requeue", "--spool-dir", str(tmp_path))[1].endswith("\nrequeued 3 dead letters\n")
    assert json.loads(run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")[1])["total"]["pending"] == 6
    leave_spool(tmp_path, 2, dead=2)
    assert run_cli(capsys, "dlq", "purge", "--spool-dir", str(tmp_path))[1] == "purged 2 dead letters\n"
    assert run_cli(capsys, "dlq", "list", "--spool-dir", str(tmp_path))[1] == ""


def test_dlq_refuses_to_change_a_file_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Spool(tmp_path) as live:
        live.put_many(records(2))
        claim = live.claim(1)
        assert claim is not None
        live.dead_letter(claim, claim.records, "bad")
        code, _, err = run_cli(capsys, "dlq", "requeue", "--spool-dir", str(tmp_path))
    assert code == 1
    assert err.count("\n") == 1
    assert f"in use by process {os.getpid()}" in err


def test_missing_spool_dir_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "status", "--spool-dir", str(tmp_path / "nope"))
    assert (code, err) == (1, f"sentinel-durable: no spool directory at {tmp_path / 'nope'}\n")


def test_bad_environment_value_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_RETRY_BACKOFF", "soon")
    code, _, err = run_cli(capsys, "status", "--spool-dir", str(tmp_path))
    assert code == 2
    assert err.startswith("sentinel-durable: SENTINEL_RETRY_BACKOFF='soon'")


def test_drain_delivers_everything_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broker: BrokerUnderTest, topic: str
) -> None:
    ids = leave_spool(tmp_path, 300).event_ids + leave_spool(tmp_path, 200).event_ids
    code, out, err = run_cli(
        capsys, "drain", "--spool-dir", str(tmp_path), "--brokers", broker.bootstrap_servers, "--topic", topic
    )
    assert code == 0, err
    assert "delivered 500 events" in out
    assert "draining: 500/500 events" in err
    found = {json.loads(r.value)["event_id"] for r in broker.read_topic(topic, expected=500)}
    assert found == set(ids)
    assert spool_files(tmp_path) == []


def test_drain_with_no_broker_fails_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leave_spool(tmp_path, 20)
    broker = f"127.0.0.1:{free_port()}"
    code, _, err = run_cli(capsys, "drain", "--spool-dir", str(tmp_path), "--brokers", broker, "--timeout", "1")
    assert code == 1
    (line,) = [line for line in err.splitlines() if line.startswith("sentinel-durable:")]
    assert "20 events still spooled" in line
    assert "Traceback" not in err
    total = json.loads(run_cli(capsys, "status", "--spool-dir", str(tmp_path), "--json")[1])["total"]
    assert total["pending"] == 20  # all still on disk


def test_broker_command_serves_until_interrupted(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen([*CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert f"127.0.0.1:{port}" in process.stdout.readline()
        with sentinel.Client(brokers=[f"127.0.0.1:{port}"], topic="dev", spool_dir=tmp_path) as client:
            client.track(service="s", model="m", prompt="p", response="r", latency_ms=1)
            assert client.flush(timeout=30)
    finally:
        # A shell's background job ignores SIGINT, and so does the child it inherits that from:
        # then SIGTERM, which stops the broker too (a SIGKILL would leave Tansu running).
        sigint_ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        process.send_signal(signal.SIGTERM if sigint_ignored else signal.SIGINT)
        try:
            assert process.wait(timeout=30) == (128 + signal.SIGTERM if sigint_ignored else 130)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


def test_demo_tells_the_story_and_loses_nothing() -> None:
    result = subprocess.run([*CLI, "demo", "--events", "300"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "killed with SIGKILL" in result.stdout
    summary = next(line for line in result.stdout.splitlines() if line.startswith("Summary:"))
    assert summary.endswith("lost 0")
    assert "sent " in summary
