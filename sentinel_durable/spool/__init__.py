"""The durable spool: SQLite files in persist-queue's layout, batched, bounded and crash-safe.

One module a role, in the order data moves:

* ``schema``    — a file's table, statuses and names, every SQL and PRAGMA string, opening a file;
* ``file``      — one owned file's transactions (insert, claim, settle, drop, shrink, close);
* ``locks``     — the owner lock that makes one process a file's owner;
* ``ownership`` — the files a spool owns: its active file, adoption of orphans, quarantine;
* ``commit``    — group commit, and the async mode's buffer and writer thread;
* ``bounds``    — ``max_spool_bytes`` and the overflow policy, ``max_event_age``, shrinking;
* ``readonly``  — reading files from outside without owning them (the command line, the backlog);
* ``directory`` — :class:`Spool`, a spool directory as one queue, composing the above.

docs/architecture.md draws how they fit.
"""

from ..records import ClaimedRecord, SpoolRecord
from .directory import FlushMark, Spool, SpoolCounts
from .file import Claim
from .locks import lock_path_for, owner_alive, owner_pid
from .ownership import new_file, owned_file, quarantined_files, spool_files
from .readonly import DeadLetter, FileReport, inspect_file, read_dead_letters, read_events, recorded_topic
from .schema import SCHEMA_VERSION

__all__ = [
    "SCHEMA_VERSION",
    "Claim",
    "ClaimedRecord",
    "DeadLetter",
    "FileReport",
    "FlushMark",
    "Spool",
    "SpoolCounts",
    "SpoolRecord",
    "inspect_file",
    "lock_path_for",
    "new_file",
    "owned_file",
    "owner_alive",
    "owner_pid",
    "quarantined_files",
    "read_dead_letters",
    "read_events",
    "recorded_topic",
    "spool_files",
]
