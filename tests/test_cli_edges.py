"""The command line at its edges: files owned by live processes, read-only status, closed pipes, empty answers."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from conftest import CLI, BrokerUnderTest, run_cli
from spool_helpers import leave_spool, records

from sentinel_durable.spool import Spool, lock_path_for, spool_files


def test_drain_of_a_file_owned_by_a_live_process_names_it_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broker: BrokerUnderTest, topic: str
) -> None:
    leave_spool(tmp_path, 3)  # an orphan: drain delivers it
    with Spool(tmp_path) as live:
        live.put_many(records(4))
        code, out, err = run_cli(
            capsys, "drain", "--spool-dir", str(tmp_path), "--brokers", broker.bootstrap_servers, "--topic", topic
        )
        owned = live.active_path.name
    assert code == 1
    assert "delivered 3 events" in out
    (line,) = [line for line in err.splitlines() if line.startswith("sentinel-durable:")]
    assert f"{owned} is owned by live process {os.getpid()}" in line
    assert "4 events were not drained" in line
    assert len(broker.read_topic(topic, expected=3)) == 3


def test_status_does_not_write_its_pid_into_lock_files(tmp_path: Path) -> None:
    leave_spool(tmp_path, 2)  # its owner (this process) let go of it
    (path,) = spool_files(tmp_path)
    lock = lock_path_for(path)
    before = lock.read_bytes()
    owners = []
    for _ in range(2):  # the second run would see the first one's pid
        result = subprocess.run(
            [*CLI, "status", "--spool-dir", str(tmp_path), "--json"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        (report,) = json.loads(result.stdout)["files"]
        owners.append((report["owner_alive"], report["owner_pid"]))
    assert owners == [(False, os.getpid())] * 2
    assert lock.read_bytes() == before == f"{os.getpid()}\n".encode()


def test_export_into_a_pipe_closed_early_exits_0_quietly(tmp_path: Path) -> None:
    leave_spool(tmp_path, 2000)  # far more than a pipe buffer holds
    process = subprocess.Popen(
        [*CLI, "export", "--spool-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert process.stderr is not None
        assert json.loads(process.stdout.readline())["event_id"]
        process.stdout.close()  # `| head -1`: the reader has what it wanted
        err = process.stderr.read().decode()
        assert process.wait(timeout=60) == 0, err
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
    assert err == ""


def test_dlq_list_without_dead_letters_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leave_spool(tmp_path, 3)
    code, out, err = run_cli(capsys, "dlq", "list", "--spool-dir", str(tmp_path))
    assert (code, out, err) == (0, "", f"no dead letters in {tmp_path}\n")


@pytest.mark.parametrize("command", ["status", "drain", "export", "dlq list"])
def test_spool_dir_that_is_a_file_is_named_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    not_a_directory = tmp_path / "spool.txt"
    not_a_directory.write_text("")
    code, out, err = run_cli(capsys, *command.split(), "--spool-dir", str(not_a_directory))
    assert (code, out, err) == (2, "", f"sentinel-durable: --spool-dir {not_a_directory}: not a directory\n")
