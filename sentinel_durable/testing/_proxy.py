"""A loopback TCP proxy that can simulate a network outage between clients and a broker.

Threads: one acceptor while listening, and two pumps (one per direction) per proxied
connection. All are named ``tcp-proxy-<port>-...`` and daemonic, and every one is joined
with a timeout by ``cut()`` / ``close()``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

_log = logging.getLogger("sentinel_durable.testing")

_LISTEN_HOST = "127.0.0.1"
_CHUNK_BYTES = 65536
_CONNECT_TIMEOUT_S = 5.0
_JOIN_TIMEOUT_S = 5.0


class _Link:
    """One proxied connection: a client socket, an upstream socket, a pump per direction."""

    def __init__(
        self,
        client: socket.socket,
        upstream: socket.socket,
        name: str,
        on_closed: Callable[[_Link], None],
    ) -> None:
        self._sockets = (client, upstream)
        self._on_closed = on_closed
        self._lock = threading.Lock()
        self._running_pumps = 2
        self._threads = (
            threading.Thread(target=self._pump, args=(client, upstream), name=f"{name}-up", daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), name=f"{name}-down", daemon=True),
        )

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def sever(self) -> None:
        """Shut down both sockets; this wakes pumps blocked in recv() or sendall()."""
        for sock in self._sockets:
            with contextlib.suppress(OSError):  # already shut down
                sock.shutdown(socket.SHUT_RDWR)

    def join(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    def _pump(self, source: socket.socket, destination: socket.socket) -> None:
        try:
            while data := source.recv(_CHUNK_BYTES):
                destination.sendall(data)
            destination.shutdown(socket.SHUT_WR)  # pass the end of stream on (half-close)
        except OSError:
            self.sever()  # a reset or a cut on either side ends the whole connection
        finally:
            with self._lock:
                self._running_pumps -= 1
                last = self._running_pumps == 0
            if last:  # the second pump to finish owns the cleanup
                for sock in self._sockets:
                    sock.close()
                self._on_closed(self)


class TcpProxy:
    """Forward connections on ``127.0.0.1:<port>`` to ``target_host:target_port``.

    ``cut()`` simulates an outage: every open connection is closed in both directions and the
    port stops listening, so new connections are refused at once. ``restore()`` listens again
    on the same port. ``close()``, also called on leaving a ``with`` block, does what ``cut()``
    does.
    """

    def __init__(self, target_host: str, target_port: int, listen_port: int | None = None) -> None:
        self._target = (target_host, target_port)
        self._port = listen_port or 0
        self._control = threading.Lock()  # serialises start / cut / restore / close
        self._links_lock = threading.Lock()
        self._links: set[_Link] = set()
        self._link_ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        # Set before the listener closes, so the acceptor drops whatever it accepts next.
        self._stop_accepting = threading.Event()
        self._was_cut = False  # for repr(): "cut" rather than "not started"

    def __repr__(self) -> str:
        if self.listening:
            state = f"listening, {self.open_connections} connections"
        else:
            state = "cut" if self._was_cut else "not started"
        return f"<TcpProxy {_LISTEN_HOST}:{self._port} -> {self._target[0]}:{self._target[1]} {state}>"

    @property
    def port(self) -> int:
        """The listening port (0 until ``start()`` when it was left for the OS to choose)."""
        return self._port

    @property
    def listening(self) -> bool:
        return self._listener is not None

    @property
    def open_connections(self) -> int:
        with self._links_lock:
            return len(self._links)

    def start(self) -> None:
        """Listen; the port is bound when this returns. Does nothing if already listening."""
        with self._control:
            self._listen()

    def restore(self) -> None:
        """Listen again on the same port after ``cut()``."""
        self.start()

    def cut(self) -> None:
        """Refuse new connections and close every open one, in both directions."""
        with self._control:
            self._stop_listening()
            self._close_links()
            self._was_cut = True
        _log.info("tcp proxy %d cut", self._port)

    def close(self) -> None:
        self.cut()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _listen(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # restore() rebinds the port that cut() released, while its old connections linger
        # in TIME_WAIT.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((_LISTEN_HOST, self._port))
            listener.listen()
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        self._listener = listener
        self._was_cut = False
        self._stop_accepting.clear()
        self._acceptor = threading.Thread(
            target=self._accept_loop, args=(listener,), name=f"tcp-proxy-{self._port}-accept", daemon=True
        )
        self._acceptor.start()
        _log.info("tcp proxy listening on %s:%d -> %s:%d", _LISTEN_HOST, self._port, *self._target)

    def _stop_listening(self) -> None:
        listener, acceptor = self._listener, self._acceptor
        if listener is None or acceptor is None:
            return
        self._stop_accepting.set()
        # Closing a socket does not wake a thread blocked in its accept() (on Linux), so wake
        # the acceptor with a connection of our own; it sees the stop event and exits.
        with contextlib.suppress(OSError):
            socket.create_connection((_LISTEN_HOST, self._port), timeout=1.0).close()
        acceptor.join(_JOIN_TIMEOUT_S)
        listener.close()  # connections still queued in the backlog are reset
        if acceptor.is_alive():
            _log.warning("tcp proxy %d: acceptor thread did not stop in time", self._port)
        self._listener = self._acceptor = None

    def _close_links(self) -> None:
        with self._links_lock:
            links = list(self._links)
        for link in links:
            link.sever()
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        stuck = [link for link in links if not link.join(max(0.0, deadline - time.monotonic()))]
        if stuck:
            _log.warning("tcp proxy %d: %d connections did not close in time", self._port, len(stuck))

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was closed
            if self._stop_accepting.is_set():
                client.close()
                return
            self._open_link(client)

    def _open_link(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=_CONNECT_TIMEOUT_S)
        except OSError as exc:
            _log.debug("tcp proxy %d: cannot reach %s:%d: %s", self._port, *self._target, exc)
            client.close()
            return
        upstream.settimeout(None)
        for sock in (client, upstream):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link = _Link(client, upstream, f"tcp-proxy-{self._port}-{next(self._link_ids)}", self._forget)
        with self._links_lock:  # registered and started together, so cut() never joins an unstarted link
            self._links.add(link)
            link.start()

    def _forget(self, link: _Link) -> None:
        with self._links_lock:
            self._links.discard(link)
