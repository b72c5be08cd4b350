"""Everything the SDK does about ``os.fork()``, in one place.

A forked child inherits the parent's objects but not its threads, and shares its open files.
So a client, a spool or an async engine made in the parent must, in the child, never touch
the parent's SQLite connections, owner locks or producer sockets, and must start threads of
its own on first use. Four pieces do that:

* :class:`ProcessBound` — the one pid check: an object made in another process is rebuilt on
  first use, once (other threads of the child wait for it);
* :func:`after_fork_in_child` — the one registry of at-fork hooks (run in the child, in the
  order registered, each failure logged and the others still run);
* :func:`keep_inherited` — inherited objects that must never be closed in the child
  (closing an inherited SQLite connection can release the parent's locks) are kept here;
* the fork gate (:func:`section`, :class:`GatedLock`) — a fork waits until no thread is inside
  a SQLite call (see :class:`ForkGate`);

and, for ``multiprocessing`` pools, :func:`at_worker_exit`: fork-started pool workers end with
``os._exit()``, so ``atexit`` never runs there.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.util
import os
import threading
from collections.abc import Callable, Iterator

__all__ = [
    "ForkGate",
    "GatedLock",
    "ProcessBound",
    "after_fork_in_child",
    "at_worker_exit",
    "keep_inherited",
    "limit_sections",
    "section",
]

logger = logging.getLogger("sentinel_durable.fork")


# --- the pid check ---------------------------------------------------------------------------------

#: Serialises rebuilds in a forked child (replaced in every child: a parent thread may hold it at
#: fork time). Re-entrant: a rebuild may use another object that is rebuilt on its first use.
_rebuild_lock = threading.RLock()


class ProcessBound:
    """Marks the state of an object (threads, files, sockets) as belonging to the process that made it;
    ``rebuild`` makes that state anew in a forked child (without one, the owner only asks ``inherited``
    and replaces the object itself)."""

    __slots__ = ("_rebuild", "pid")

    def __init__(self, rebuild: Callable[[], None] | None = None) -> None:
        self.pid = os.getpid()
        self._rebuild = rebuild

    @property
    def inherited(self) -> bool:
        """True in a forked child, until :meth:`ensure` rebuilt the state there."""
        return self.pid != os.getpid()

    def ensure(self) -> None:
        """In a forked child, run ``rebuild`` once (the first caller; the others wait for it)."""
        if self.pid == os.getpid():
            return
        with _rebuild_lock:
            if self.pid != os.getpid():
                if self._rebuild is not None:
                    self._rebuild()
                self.pid = os.getpid()  # last: other threads wait above until the state is new


# --- inherited objects -------------------------------------------------------------------------

#: Objects inherited across fork() that the child must never close or use: kept referenced
#: for the child's lifetime, so no finaliser closes them either.
_INHERITED: list[object] = []


def keep_inherited(thing: object) -> None:
    _INHERITED.append(thing)


# --- the registry of at-fork hooks ---------------------------------------------------------------

_IN_CHILD: list[Callable[[], None]] = []


def after_fork_in_child(hook: Callable[[], None]) -> None:
    """Run ``hook`` in every forked child, right after the fork (single-threaded: keep it short)."""
    _IN_CHILD.append(hook)


def _run_child_hooks() -> None:
    global _rebuild_lock, _GATE
    _GATE = ForkGate()  # first: the inherited gate counts the parent's threads (and may be locked)
    _rebuild_lock = threading.RLock()
    for hook in _IN_CHILD:
        try:
            hook()
        except Exception:  # one hook's trouble must not leave the others undone
            logger.exception("an after-fork hook of sentinel-durable failed")


# --- the fork gate ---------------------------------------------------------------------------------


class ForkGate:
    """Keeps ``os.fork()`` out of SQLite calls.

    SQLite guards process-wide state (its allocator's statistics, its table of open files) with
    pthread mutexes. A child forked while another thread of the parent is inside a SQLite call
    inherits such a mutex locked by a thread that does not exist in the child, and the child's
    first SQLite call (opening its own spool file) then waits forever. Every SQLite call of the
    spool runs inside ``section()``; a fork waits until no thread is in one, lets none in until
    it is done, and the child starts with a fresh gate.

    A section nests (per thread), and is short: one statement or transaction, at most SQLite's
    busy timeout when another process holds the file's write lock. Never yield from inside one.
    """

    #: How long a fork waits for sections to end beyond the longest busy timeout in use.
    FORK_WAIT_MARGIN = 1.0

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a section ended, or a fork did
        self._inside = 0  # threads inside a section
        self._forks = 0  # forks waiting or in progress
        self._depth = threading.local()

    def enter(self) -> None:
        """Start a section (wait while a fork is in progress); ``leave()`` ends it."""
        local = self._depth
        depth = getattr(local, "value", 0)
        if depth == 0:
            with self._lock:
                while self._forks:
                    self._changed.wait()
                self._inside += 1
        local.value = depth + 1

    def leave(self) -> None:
        local = self._depth
        local.value -= 1
        if local.value == 0:
            with self._lock:
                self._inside -= 1
                if self._forks and not self._inside:
                    self._changed.notify_all()

    @contextlib.contextmanager
    def section(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    def before_fork(self) -> None:
        own = 1 if getattr(self._depth, "value", 0) else 0  # a fork from inside a section cannot wait for itself
        wait = _section_limit() + self.FORK_WAIT_MARGIN
        with self._lock:
            self._forks += 1
            if not self._changed.wait_for(lambda: self._inside <= own, timeout=wait):
                logger.warning(
                    "fork() while another thread is still inside a spool SQLite call after %gs: the child's"
                    " SQLite calls may hang", wait,
                )  # fmt: skip

    def after_fork_in_parent(self) -> None:
        with self._lock:
            self._forks -= 1
            if not self._forks:
                self._changed.notify_all()


_GATE = ForkGate()


def _default_section_limit() -> float:
    return 10.0


_section_limit: Callable[[], float] = _default_section_limit


def limit_sections(longest: Callable[[], float]) -> None:
    """Tell the gate how long a section may last at most (the longest busy timeout of the live spools)."""
    global _section_limit
    _section_limit = longest


def section() -> contextlib.AbstractContextManager[None]:
    """A fork section of the current process's gate: wrap every SQLite call in one."""
    return _GATE.section()


class GatedLock:
    """A lock whose holder is inside a fork section: what it does under the lock is SQLite."""

    __slots__ = ("_gate", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gate: ForkGate | None = None  # the gate entered (a fork in a child replaces the module's)

    def __enter__(self) -> None:
        self._lock.acquire()
        gate = _GATE
        try:
            gate.enter()
        except BaseException:
            self._lock.release()
            raise
        self._gate = gate  # only the lock's holder reads or writes it

    def __exit__(self, *exc_info: object) -> None:
        gate, self._gate = self._gate, None
        try:
            if gate is not None:
                gate.leave()
        finally:
            self._lock.release()


def _before_fork() -> None:
    _GATE.before_fork()


def _after_fork_in_parent() -> None:
    _GATE.after_fork_in_parent()


os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_run_child_hooks)


# --- multiprocessing workers ---------------------------------------------------------------------
# A multiprocessing child started by fork or forkserver (every Pool worker of those) ends with
# os._exit(): atexit hooks never run there, so a worker's client would be left unclosed, its
# flusher killed mid-batch, and the records it had produced but not yet deleted delivered a
# second time by whoever adopts its file. multiprocessing runs its own finalizers before that
# os._exit, so the exit hooks are registered there too, in every such child that needs them.

_AT_WORKER_EXIT: list[Callable[[], None]] = []
#: The process whose multiprocessing registry holds our finalizer (the registry is cleared in
#: every child multiprocessing starts, so one registration per process).
_finalizer_pid: int | None = None


def at_worker_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` when this process ends, if it is a multiprocessing child (where atexit never runs).

    Call it when the process starts to need the hook (a client is made); registering the same
    hook again is harmless."""
    global _finalizer_pid
    if hook not in _AT_WORKER_EXIT:
        _AT_WORKER_EXIT.append(hook)
    if _finalizer_pid == os.getpid() or multiprocessing.parent_process() is None:
        return
    _finalizer_pid = os.getpid()
    multiprocessing.util.Finalize(None, _run_worker_exit_hooks, exitpriority=10)


def _run_worker_exit_hooks() -> None:
    for hook in list(_AT_WORKER_EXIT):
        try:
            hook()
        except Exception:
            logger.exception("an exit hook of sentinel-durable failed in a worker process")


def _register_at_child_start(_: object) -> None:
    # multiprocessing calls this in each child it starts, once it has cleared the registry of
    # finalizers the parent left: registering here covers objects inherited or made before then.
    global _finalizer_pid
    _finalizer_pid = None
    if _AT_WORKER_EXIT:
        at_worker_exit(_AT_WORKER_EXIT[0])


class _AfterForkToken:
    """Something multiprocessing can hold weakly: its registry of after-fork hooks is weak."""


_AFTER_FORK_TOKEN = _AfterForkToken()
multiprocessing.util.register_after_fork(_AFTER_FORK_TOKEN, _register_at_child_start)
