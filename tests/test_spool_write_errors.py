"""A write the spool cannot make is a ``SpoolFullError`` ("the spool cannot take the event now") with
the SQLite error as its ``__cause__``, never a raw ``OSError``; nothing of the refused call is spooled,
and nothing spooled before is lost."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from conftest import offline_client

import sentinel_durable as sentinel
from sentinel_durable.spool import spool_files

FIELDS = {"service": "svc", "model": "gpt-4", "prompt": "q", "response": "a", "latency_ms": 5.0}


def test_a_write_lock_held_past_write_timeout_is_a_spool_full_error_with_its_cause(spool_dir: Path) -> None:
    client = offline_client(spool_dir, topic="locked", write_timeout=0.2)
    try:
        client.track(**FIELDS)
        (path,) = spool_files(spool_dir)
        holder = sqlite3.connect(path, isolation_level=None)  # another tool holds the file's write lock
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(sentinel.SpoolFullError) as caught:
                client.track(**FIELDS)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert not isinstance(caught.value, OSError)
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        assert "write lock" in str(caught.value)
        assert "not spooled" in str(caught.value)
        client.track(**FIELDS)  # the lock is gone: sends go on
        assert client.stats().spooled == 2
    finally:
        client.close(timeout=0)


def test_every_member_of_a_group_commit_gets_the_same_typed_error(spool_dir: Path) -> None:
    client = offline_client(spool_dir, topic="locked", write_timeout=0.3)
    try:
        client.track(**FIELDS)
        (path,) = spool_files(spool_dir)
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        errors: list[BaseException] = []

        def send() -> None:
            try:
                client.track(**FIELDS)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send) for _ in range(4)]
        try:
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=10)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert len(errors) == 4
        assert all(isinstance(error, sentinel.SpoolFullError) for error in errors), errors
        assert client.stats().spooled == 1
    finally:
        client.close(timeout=0)
