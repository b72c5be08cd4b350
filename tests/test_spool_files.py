"""The spool's files on disk: an unreadable or damaged file is quarantined and sends keep working, a
file that is only busy is not, a file of a newer version is left alone; the directory is 0700 and
the files 0600 whatever the umask, an unwritable directory is a ConfigError naming spool_dir, and
an empty spool leaves no file behind."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path

import pytest
from spool_helpers import drain_all, leave_spool_of_a_dead_process, record, records

from sentinel_durable import ConfigError
from sentinel_durable.spool import Spool

# --- corruption -----------------------------------------------------------------------------------


def test_unreadable_file_is_quarantined_and_sends_keep_working(
    spool_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool_dir.mkdir(parents=True)
    bad = spool_dir / "spool-00000000000000000001-1-deadbeef.db"
    bad.write_bytes(b"this is not a database" * 1000)
    with Spool(spool_dir) as spool, caplog.at_level(logging.ERROR, logger="sentinel_durable"):
        assert spool.adopt_orphans() == 0
        spool.put_many([record()])
        counts = spool.counts()
        assert counts.pending == 1
        assert len(counts.quarantined) == 1
    assert not bad.exists()
    quarantined = spool_dir / counts.quarantined[0]
    assert quarantined.exists()
    assert counts.quarantined[0] in caplog.text


def test_file_failing_its_integrity_check_is_quarantined(spool_dir: Path) -> None:
    path = leave_spool_of_a_dead_process(spool_dir, 2000, size=500)
    with open(path, "r+b") as handle:  # damage pages in the middle
        handle.seek(path.stat().st_size // 2)
        handle.write(os.urandom(8192))
    with Spool(spool_dir) as spool:
        spool.adopt_orphans()
        spool.put_many([record()])
        counts = spool.counts()
        assert [name.split(".corrupt-")[0] for name in counts.quarantined] == [path.name]
        assert counts.pending == 1


def test_a_file_that_is_only_busy_is_not_quarantined(spool_dir: Path) -> None:
    path = leave_spool_of_a_dead_process(spool_dir, 5)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # a backup tool holding the file for a moment
    try:
        with Spool(spool_dir, write_timeout=0.2) as spool:
            assert spool.adopt_orphans() == 0
            assert spool.counts().quarantined == []
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert path.exists()
    assert len(drain_all(spool_dir)) == 5  # adopted once it is free


def test_file_from_a_newer_version_is_left_alone(spool_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = leave_spool_of_a_dead_process(spool_dir, 3)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 99")
    with Spool(spool_dir) as spool, caplog.at_level(logging.WARNING, logger="sentinel_durable"):
        assert spool.adopt_orphans() == 0
        assert spool.counts().quarantined == []
    assert path.exists()
    assert "newer sentinel-durable" in caplog.text


# --- permissions and leftovers --------------------------------------------------------------------


def test_directory_and_files_are_private_whatever_the_umask(spool_dir: Path) -> None:
    old = os.umask(0)
    try:
        with Spool(spool_dir) as spool:
            spool.put_many(records(10))
            assert stat.S_IMODE(spool_dir.stat().st_mode) == 0o700
            names = sorted(p.name for p in spool_dir.iterdir())
            assert any(n.endswith("-wal") for n in names)
            assert any(n.endswith("-shm") for n in names)
            for path in spool_dir.iterdir():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name
    finally:
        os.umask(old)


def test_unwritable_directory_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        target = Path("/proc/sentinel-durable-spool")  # even root cannot create here
    else:
        target = tmp_path / "ro"
        target.mkdir(mode=0o500)
    with pytest.raises(ConfigError) as caught:
        Spool(target)
    assert caught.value.name == "spool_dir"


def test_closing_an_empty_spool_leaves_no_files(spool_dir: Path) -> None:
    with Spool(spool_dir) as spool:
        claim_none = spool.claim(10)
        assert claim_none is None
    assert list(spool_dir.iterdir()) == []
