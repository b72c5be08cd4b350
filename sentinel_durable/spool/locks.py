"""Owner locks: one process owns a spool file, by an OS lock (``flock``) on a sibling ``.lock`` file.

The lock dies with its process, so a file whose lock can be taken is an orphan (its owner is
gone) and may be adopted. The lock file holds the owner's pid, for ``sentinel-durable status``.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from pathlib import Path

from .schema import LOCK_SUFFIX

__all__ = ["lock_path_for", "owner_alive", "owner_pid", "try_lock", "unlock"]


def try_lock(lock_path: Path) -> int | None:
    """Lock ``lock_path`` for this process, or return None if another process holds it."""
    fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    # The file may have been removed (by an owner finishing with it) between our open and
    # our lock: then we locked an orphaned inode, and must try again from scratch.
    try:
        same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock(fd: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(fd, fcntl.LOCK_UN)
    with contextlib.suppress(OSError):
        os.close(fd)


def lock_path_for(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + LOCK_SUFFIX)


def owner_alive(db_path: Path) -> bool:
    """True when some process holds the file's owner lock (used by ``status``).

    Read-only: the lock file is opened for reading and probed with a shared lock, so the pid
    its owner wrote stays there (taking the lock would write ours).
    """
    try:
        fd = os.open(lock_path_for(db_path), os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)  # closing releases the probe's lock
    return False


def owner_pid(db_path: Path) -> int | None:
    """The pid the last owner wrote into the lock file, if any."""
    try:
        text = lock_path_for(db_path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
