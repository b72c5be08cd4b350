"""One owner per spool file: two spools, or two processes, on one directory write different files;
the files of a dead owner are adopted, their claimed rows pending again; a forked child, and the
grandchild of a fork, write files of their own while the parent keeps its file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from spool_helpers import drain_all, leave_spool_of_a_dead_process, record, records

from sentinel_durable.spool import Spool, owner_alive, spool_files

# --- owners ---------------------------------------------------------------------------------------


def test_two_spools_on_one_directory_use_different_files(spool_dir: Path) -> None:
    with Spool(spool_dir) as first, Spool(spool_dir) as second:
        assert first.active_path != second.active_path
        assert owner_alive(first.active_path)
        assert owner_alive(second.active_path)


def test_a_second_process_takes_another_file(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many([record()])
        code = (
            "import sys; from pathlib import Path; from sentinel_durable.spool import Spool; "
            f"s = Spool(Path({str(spool_dir)!r})); s.adopt_orphans(); print(s.active_path.name, s.counts().pending)"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
        assert out[0] != spool.active_path.name
        assert out[1] == "0"  # the live owner's events are not taken


def test_files_of_a_dead_owner_are_adopted_and_claimed_rows_return_to_pending(spool_dir: Path) -> None:
    leave_spool_of_a_dead_process(spool_dir, 10, claim=4)
    (orphan,) = spool_files(spool_dir)
    assert not owner_alive(orphan)
    with Spool(spool_dir) as spool:
        assert spool.adopt_orphans() == 1
        counts = spool.counts()
        assert (counts.pending, counts.in_flight, counts.files) == (10, 0, 2)
        while (claim := spool.claim(3)) is not None:
            spool.ack(claim)
        assert not orphan.exists(), "a drained adopted file is removed"
        assert spool.counts().files == 1


# --- fork -----------------------------------------------------------------------------------------


def test_forked_child_writes_its_own_file(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many([record()])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child
            try:
                spool.put_many(records(3))
                os.write(write, f"{spool.active_path.name} {spool.counts().pending}".encode())
            finally:
                os._exit(0)
        os.close(write)
        child_file, child_pending = os.read(read, 1000).decode().split()
        os.waitpid(pid, 0)
        os.close(read)
        assert child_file != spool.active_path.name
        assert child_pending == "3"
        spool.put_many([record()])  # the parent keeps working
        assert spool.counts().pending == 2
        assert owner_alive(spool.active_path)
    assert len(drain_all(spool_dir)) == 5  # the parent's two and the child's three, each left in its file


def test_grandchild_of_a_fork_can_use_the_spool(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        spool.put_many([record()])
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                grandchild = os.fork()  # before the child ever used the spool
                if grandchild == 0:
                    try:
                        spool.put_many(records(2))
                        os.write(write, str(spool.counts().pending).encode())
                    finally:
                        os._exit(0)
                os.waitpid(grandchild, 0)
                status = 0
            finally:
                os._exit(status)
        os.close(write)
        assert os.read(read, 100) == b"2"
        _, code = os.waitpid(pid, 0)
        os.close(read)
        assert os.waitstatus_to_exitcode(code) == 0
        assert spool.counts().pending == 1
