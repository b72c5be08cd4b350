"""Which spool files of a directory this process owns: its active file, the orphans it adopted.

A file is named by its creation time, so a directory listing is oldest first. A file whose owner
lock is free is an orphan: its owner is gone. :class:`Ownership` adopts the orphans that record
its topic (or none, from before files recorded one), quarantines those it cannot read, and
leaves alone those of another topic, those a newer version wrote, and those a live process owns.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..crypto import SpoolCipher
from ..errors import ConfigError, SpoolFileBusy, SpoolFileCorrupt, SpoolFileTooNew, SpoolFileUnavailable
from .file import SpoolFile
from .locks import lock_path_for, owner_alive, owner_pid, try_lock, unlock
from .readonly import Backlog, read_backlog, recorded_topic
from .schema import FILE_PREFIX, FILE_SUFFIX, QUARANTINE_MARK, Durability

__all__ = ["Ownership", "new_file", "owned_file", "quarantined_files", "spool_files"]

logger = logging.getLogger("sentinel_durable.spool")


def spool_files(directory: Path) -> list[Path]:
    """The spool files of a directory, oldest first (names start with their creation time)."""
    return sorted(p for p in directory.glob(f"{FILE_PREFIX}*{FILE_SUFFIX}") if p.is_file())


def quarantined_files(directory: Path) -> list[Path]:
    return sorted(
        p for p in directory.glob(f"{FILE_PREFIX}*{QUARANTINE_MARK}*") if not p.name.endswith(("-wal", "-shm"))
    )


def _new_file_name() -> str:
    return f"{FILE_PREFIX}{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}{FILE_SUFFIX}"


class Ownership:
    """The files one spool owns in its directory, and the adoption of orphans (one process's state).

    ``topic`` is recorded in the files it creates, and only files recording ``adopt_topic``
    (usually the same) are adopted; a file recording none is adopted (and stamped with
    ``topic``) when ``adopt_topic`` is ``topic``. ``topic=None`` (tools, tests) adopts every file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        topic: str | None,
        adopt_topic: str | None,
        durability: Durability,
        busy_timeout: float,
        cipher: SpoolCipher | None,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self.adopt_topic = adopt_topic
        self._durability: Durability = durability
        self._busy_timeout = busy_timeout
        self._cipher = cipher
        self.quarantined: list[str] = []
        self.lock = threading.Lock()  # guards adopted, active, adopting and unavailable
        # One adoption pass at a time: a flush must not take its mark while another thread
        # holds a file it has locked but not yet added to adopted.
        self._adopt_lock = threading.Lock()
        self.adopted: list[SpoolFile] = []
        self._warned_too_new: set[Path] = set()
        self._not_ours: set[Path] = set()  # files recording another topic (a recorded topic never changes)
        self.adopted_once = False  # the first adoption pass is done
        # Orphans that counts() reads without owning them: those an adoption pass is taking over
        # (from before it locks one until, under the lock, it is in adopted or let go) and
        # those the last pass could not open (a tool holds them locked). Both are our backlog.
        self.adopting: set[Path] = set()
        self.unavailable: set[Path] = set()
        self.active = self._create_active_file()

    def _create_active_file(self) -> SpoolFile:
        for _ in range(5):
            path = self.directory / _new_file_name()
            try:
                lock_fd = try_lock(lock_path_for(path))
            except OSError as exc:
                raise ConfigError("spool_dir", f"cannot create a spool file: {exc.strerror}", str(path)) from exc
            if lock_fd is None:
                continue
            try:
                return self._open(path, lock_fd, self.topic)
            except (SpoolFileCorrupt, SpoolFileUnavailable) as exc:
                unlock(lock_fd)
                raise ConfigError("spool_dir", f"cannot create a spool file: {exc}", str(path)) from exc
        raise ConfigError("spool_dir", "cannot lock a new spool file", str(self.directory))

    def _open(self, path: Path, lock_fd: int, topic: str | None) -> SpoolFile:
        return SpoolFile(
            path, lock_fd, durability=self._durability, busy_timeout=self._busy_timeout, cipher=self._cipher,
            topic=topic,
        )  # fmt: skip

    def files(self) -> list[SpoolFile]:
        """Adopted files (oldest first), then the active one: the order claims drain them in."""
        with self.lock:
            return [*self.adopted, self.active]

    def adopts(self, recorded: str | None) -> bool:
        """Whether this spool takes over a file recording ``recorded`` as its topic."""
        if self.topic is None:
            return True
        if recorded is None:  # no topic recorded: ours, unless we adopt another topic's files
            return self.adopt_topic == self.topic
        return recorded == self.adopt_topic

    # -- adoption ---------------------------------------------------------------------------

    def orphans_listed(self) -> bool:
        """Whether the directory lists a spool file this spool might adopt (a listing: no file is opened)."""
        held = {f.path for f in self.files()}
        return any(path not in held and path not in self._not_ours for path in spool_files(self.directory))

    def adopt_orphans(self) -> int:
        """Lock and adopt every file of the directory whose owner is gone; returns how many.

        Files that fail to open or their integrity check are quarantined.
        """
        with self._adopt_lock:
            held = {f.path for f in self.files()}
            adopted = 0
            paths = spool_files(self.directory)
            self._not_ours.intersection_update(paths)
            with self.lock:
                self.unavailable.intersection_update(paths)
            for path in paths:
                if path in held or path in self._not_ours:
                    continue
                with self.lock:
                    self.adopting.add(path)  # before the lock: counts() never misses it in between
                spool_file = None
                try:
                    spool_file = self._adopt_file(path)
                finally:
                    with self.lock:  # in one step, so counts() finds the file in exactly one place
                        self.adopting.discard(path)
                        if spool_file is not None:
                            self.adopted.append(spool_file)
                if spool_file is not None:
                    logger.info("adopted spool file %s with %d pending events", path.name, spool_file.pending)
                    adopted += 1
            self.adopted_once = True
            return adopted

    def _adopt_file(self, path: Path) -> SpoolFile | None:
        """Lock, open and adopt one file of the directory; None if it is not ours, owned, empty or unusable."""
        with self.lock:
            self.unavailable.discard(path)
        if self.topic is not None:
            # Read before locking: a file for another topic is never locked or changed by us.
            try:
                recorded = recorded_topic(path)
            except (SpoolFileCorrupt, OSError):
                recorded = None  # opened below, under the lock, and quarantined if it is corrupt
            if recorded is not None and not self.adopts(recorded):
                self._not_ours.add(path)
                return None
        lock_fd = try_lock(lock_path_for(path))
        if lock_fd is None:
            return None  # a live owner has it
        if not path.exists():  # removed since we listed it: drop the lock file we just made
            with contextlib.suppress(FileNotFoundError):
                lock_path_for(path).unlink()
            unlock(lock_fd)
            return None
        try:
            spool_file = self._open(path, lock_fd, self.adopt_topic)
            if not self.adopts(spool_file.topic):  # recorded by someone else since we looked
                self._not_ours.add(path)
                spool_file.close()
                return None
            if spool_file.topic is None and self.topic is not None:
                logger.warning(
                    "spool file %s records no topic (written by an older sentinel-durable); adopting it for"
                    " topic %r and recording that topic in it", path.name, self.topic,
                )  # fmt: skip
                spool_file.record_topic(self.topic)
            spool_file.adopt()
        except SpoolFileTooNew as exc:
            if path not in self._warned_too_new:
                self._warned_too_new.add(path)
                logger.warning("leaving spool file %s alone: %s", path.name, exc)
            unlock(lock_fd)
            return None
        except SpoolFileUnavailable as exc:  # locked by a tool, I/O error, disk full: try again later
            logger.info("cannot open spool file %s now (%s); will try again", path.name, exc)
            with self.lock:
                self.unavailable.add(path)  # still our backlog: counts() reads it
            unlock(lock_fd)
            return None
        except (SpoolFileCorrupt, sqlite3.DatabaseError) as exc:
            self._quarantine(path, str(exc))
            with contextlib.suppress(FileNotFoundError):
                lock_path_for(path).unlink()
            unlock(lock_fd)
            return None
        if spool_file.tally() == (0, 0, 0) and spool_file.close(remove_if_empty=True):
            return None  # nothing left in it
        return spool_file

    def _quarantine(self, path: Path, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = path.with_name(f"{path.name}{QUARANTINE_MARK}{stamp}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
        self.quarantined.append(target.name)
        logger.error("spool file %s is unreadable (%s); moved aside as %s", path.name, reason, target.name)

    def release_drained(self, spool_file: SpoolFile) -> None:
        """An adopted file that holds nothing any more: let it go and delete it."""
        with self.lock:
            if spool_file in self.adopted:
                self.adopted.remove(spool_file)
        if spool_file.close(remove_if_empty=True):  # checked in SQL: only a truly empty file goes
            logger.debug("removed drained spool file %s", spool_file.path.name)

    # -- the backlog not yet adopted --------------------------------------------------------

    def snapshot(self) -> tuple[list[SpoolFile], set[Path], set[Path]]:
        """``(owned files, files being adopted, files that could not be opened)``, read together."""
        with self.lock:
            return [*self.adopted, self.active], set(self.adopting), set(self.unavailable)

    def orphans_to_adopt(self, owned: set[Path], adopting: set[Path], unavailable: set[Path]) -> list[Backlog]:
        """The files of our topic not (yet) ours that an adoption pass takes over, read read-only.

        Until the first pass is done, every orphan of the directory; then those a pass is taking
        over or could not open. Never waits: a read of a WAL file is not blocked by a writer,
        and a file that cannot be read at once (or is not ours, or too new) is left out.
        """
        candidates = spool_files(self.directory) if not self.adopted_once else sorted(adopting | unavailable)
        backlog = []
        for path in candidates:
            if path in owned or path in self._not_ours:
                continue
            if path not in adopting:
                # Probed under the lock: a pass marks a file as adopting (under it) before it
                # locks the file, so the probe's shared lock never makes our pass find it busy.
                with self.lock:
                    ours = path in self.adopting or any(f.path == path for f in self.adopted)
                    if not ours and owner_alive(path):
                        continue  # a live process owns it (one that adopted it since our last pass, too)
            found = read_backlog(path)
            if found is not None and self.adopts(found.topic):
                backlog.append(found)
        return backlog


# --- files opened by the command line ------------------------------------------------------------


@contextlib.contextmanager
def owned_file(path: Path) -> Iterator[SpoolFile]:
    """Take ownership of a spool file whose owner is gone (to change it); raises ``SpoolFileBusy`` otherwise."""
    lock_fd = try_lock(lock_path_for(path))
    if lock_fd is None:
        pid = owner_pid(path)
        raise SpoolFileBusy(f"{path.name} is in use by process {pid if pid is not None else '?'}")
    try:
        spool_file = SpoolFile(path, lock_fd, durability="process", busy_timeout=5.0)
    except BaseException:
        unlock(lock_fd)
        raise
    try:
        spool_file.adopt()
        yield spool_file
    finally:
        spool_file.close()


@contextlib.contextmanager
def new_file(directory: Path, topic: str) -> Iterator[SpoolFile]:
    """A new spool file in ``directory`` recording ``topic``, owned while in the block; left for
    a client of that topic to adopt (removed if still empty).

    In power mode whatever the spool's: its events were moved from another file (they are rare
    and few), so its name, schema and inserts are on disk before the other file forgets them."""
    for _ in range(5):
        path = directory / _new_file_name()
        lock_fd = try_lock(lock_path_for(path))
        if lock_fd is not None:
            break
    else:
        raise SpoolFileBusy(f"cannot lock a new spool file in {directory}")
    try:
        spool_file = SpoolFile(path, lock_fd, durability="power", busy_timeout=5.0, topic=topic)
    except BaseException:
        unlock(lock_fd)
        raise
    try:
        yield spool_file
    finally:
        spool_file.close(remove_if_empty=True)
