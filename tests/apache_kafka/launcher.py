"""Apache Kafka for the test tier: real brokers in KRaft mode, assembled from the published jars.

``KafkaCluster(nodes=1 or 3, ...)`` resolves the broker's runtime jars with Maven from
``pom.xml`` beside this file (``mvn dependency:build-classpath``; the jars stay in the user's
Maven repository, the classpath in ``~/.cache/sentinel-durable``), formats each node's storage
and starts every node as a combined broker + controller (a 1- or 3-voter quorum) on free
loopback ports. Log directories are on disk, in the cluster's work directory, so a node that
is killed and restarted keeps what it acknowledged; ports and directories stay the same across
restarts.

Listeners of each node:

- ``CLIENT`` (PLAINTEXT): what tests' clients use; with ``with_proxy=True`` it is advertised
  through a ``TcpProxy`` per node, so ``cluster.proxy.cut()`` is an outage as clients see it.
- ``INTERNAL`` (PLAINTEXT): replication, and the cluster's own admin and read-back clients, so
  that reading a topic back never goes through a cut proxy.
- ``CONTROLLER`` (PLAINTEXT): the KRaft quorum.
- ``SASL`` (SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512), when ``users`` is given.
  SCRAM credentials are written into the bootstrap metadata when the storage is formatted.
- ``SSL`` (server certificate only) and ``MTLS`` (client certificate required), when ``tls``
  is given (PEM files; Kafka reads PEM key stores itself).

With ``authorizer=True`` the StandardAuthorizer is on, with ``User:ANONYMOUS`` (every plaintext
listener: the brokers themselves, the test's admin) and ``User:admin`` as super users; nothing
else may do anything without an ACL (``allow.everyone.if.no.acl.found=false``).

Every JVM has a bounded heap (``heap``, 512 MiB by default) and dies with the process that
started it (PR_SET_PDEATHSIG on Linux); ``stop()`` ends each node by its process id, and the
``with`` block calls it whatever happens in the test.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from conftest import free_port
from kafka import KafkaAdminClient
from kafka.admin import ACL, ACLOperation, ACLPermissionType, NewTopic, ResourcePattern, ResourceType
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import TopicAlreadyExistsError

from sentinel_durable.testing import wait_until
from sentinel_durable.testing._broker import read_records
from sentinel_durable.testing._proxy import TcpProxy

_log = logging.getLogger("sentinel_durable.tests.apache_kafka")

HOST = "127.0.0.1"
POM = Path(__file__).with_name("pom.xml")
CLIENT_ID = "sentinel-durable-kafka-tier"
#: How long a node may take from its JVM's start to answering metadata (2 cores, 3 JVMs).
STARTUP_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
SUPER_USER = "admin"
#: broker.session.timeout.ms of test clusters (Kafka's default: 9000).
SESSION_TIMEOUT_MS = 4000

_LOG4J2 = """\
status = warn
appender.file.type = Console
appender.file.name = OUT
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = OUT
logger.request.name = kafka.request.logger
logger.request.level = warn
"""


class ToolMissing(RuntimeError):
    """Java or Maven is not installed: the Apache Kafka tier cannot run here."""


# --- the jars -------------------------------------------------------------------------------------


def require_tools() -> tuple[str, str]:
    """The paths of ``java`` and ``mvn``; ``ToolMissing`` names what is missing."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    missing = [name for name, path in (("Java 17+ (java)", java), ("Maven (mvn)", mvn)) if path is None]
    if missing:
        raise ToolMissing(f"the Apache Kafka test tier needs {' and '.join(missing)} on PATH")
    assert java is not None
    assert mvn is not None
    return java, mvn


def kafka_classpath() -> str:
    """The broker's classpath, resolved by Maven once per pom (later calls read the cached list)."""
    _, mvn = require_tools()
    digest = hashlib.sha256(POM.read_bytes()).hexdigest()[:16]
    cache_dir = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sentinel-durable"
    cached = cache_dir / f"apache-kafka-{digest}.classpath"
    if cached.exists():
        classpath = cached.read_text().strip()
        if classpath and all(Path(jar).exists() for jar in classpath.split(os.pathsep)):
            return classpath
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", dir=cache_dir, suffix=".tmp", delete=False) as output:
        target = Path(output.name)
    try:
        result = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:build-classpath", f"-Dmdep.outputFile={target}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise RuntimeError(f"Maven could not resolve Apache Kafka's jars from {POM}:\n{tail}")
        target.replace(cached)
    finally:
        target.unlink(missing_ok=True)
    _log.info("resolved Apache Kafka's classpath in %.1f s (%s)", time.monotonic() - started, cached)
    return cached.read_text().strip()


# --- one node -------------------------------------------------------------------------------------


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class TlsFiles:
    """PEM files the brokers serve TLS with: ``ca`` also verifies client certificates (MTLS)."""

    ca: Path
    server_cert: Path
    server_key: Path


class KafkaNode:
    """One broker + controller JVM: its ports and directories outlive restarts."""

    def __init__(self, cluster: KafkaCluster, node_id: int) -> None:
        self.cluster = cluster
        self.node_id = node_id
        self.directory = cluster.workdir / f"node-{node_id}"
        self.data_dir = self.directory / "data"
        self.log_path = self.directory / "broker.log"
        self.ports = {name: free_port() for name in cluster.listener_names}
        self.proxy: TcpProxy | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._stopped_on_purpose = False
        self.starts = 0

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def address(self, listener: str) -> str:
        return f"{HOST}:{self.ports[listener]}"

    def advertised(self, listener: str) -> str:
        if listener == "CLIENT" and self.proxy is not None:
            return f"{HOST}:{self.proxy.port}"
        return self.address(listener)

    def properties(self) -> dict[str, str]:
        cluster = self.cluster
        listeners = [name for name in cluster.listener_names]
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            "controller.quorum.voters": ",".join(
                f"{node.node_id}@{node.address('CONTROLLER')}" for node in cluster.nodes
            ),
            "listeners": ",".join(f"{name}://{self.address(name)}" for name in listeners),
            "advertised.listeners": ",".join(
                f"{name}://{self.advertised(name)}" for name in listeners if name != "CONTROLLER"
            ),
            "listener.security.protocol.map": ",".join(
                f"{name}:{cluster.listener_protocols[name]}" for name in listeners
            ),
            "inter.broker.listener.name": "INTERNAL",
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir),
            "num.partitions": "4",
            "default.replication.factor": str(len(cluster.nodes)),
            "offsets.topic.replication.factor": str(len(cluster.nodes)),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(len(cluster.nodes)),
            "transaction.state.log.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "auto.create.topics.enable": "true",
            # A SIGKILLed node can only register again once its old session expired (9 s by
            # default), and its partitions move only then: shorter, so tests take less time.
            "broker.session.timeout.ms": str(SESSION_TIMEOUT_MS),
            "broker.heartbeat.interval.ms": "500",
        }
        if cluster.users:
            props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512"
            plain_users = " ".join(f'user_{name}="{password}"' for name, password in cluster.users.items())
            props["listener.name.sasl.plain.sasl.jaas.config"] = (
                f"org.apache.kafka.common.security.plain.PlainLoginModule required {plain_users};"
            )
            for mechanism in ("scram-sha-256", "scram-sha-512"):
                props[f"listener.name.sasl.{mechanism}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
        if cluster.tls is not None:
            keystore = self.cluster.workdir / "server-keystore.pem"
            for name in ("ssl", "mtls"):
                props[f"listener.name.{name}.ssl.keystore.type"] = "PEM"
                props[f"listener.name.{name}.ssl.keystore.location"] = str(keystore)
                props[f"listener.name.{name}.ssl.truststore.type"] = "PEM"
                props[f"listener.name.{name}.ssl.truststore.location"] = str(cluster.tls.ca)
            props["listener.name.mtls.ssl.client.auth"] = "required"
        if cluster.authorizer:
            props["authorizer.class.name"] = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
            props["super.users"] = f"User:ANONYMOUS;User:{SUPER_USER}"
            props["allow.everyone.if.no.acl.found"] = "false"
        props.update(cluster.broker_config)
        return props

    def write_config(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "server.properties"
        path.write_text("".join(f"{key}={value}\n" for key, value in self.properties().items()))
        return path

    def format_storage(self) -> None:
        config = self.write_config()
        command = [*self.cluster.java_command("kafka.tools.StorageTool", heap="256m"), "format",
                   f"--cluster-id={self.cluster.cluster_id}", "-c", str(config)]  # fmt: skip
        for name, password in self.cluster.users.items():
            for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                command += ["--add-scram", f"{mechanism}=[name={name},password={password}]"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"formatting node {self.node_id} failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        """Start the JVM (same ports, same log directory); does not wait for it to be ready."""
        if self.running:
            return
        config = self.write_config()
        self._stopped_on_purpose = False
        with open(self.log_path, "ab") as log:
            log.write(f"--- start {self.starts + 1} ---\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                [*self.cluster.java_command("kafka.Kafka", heap=self.cluster.heap), str(config)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )  # fmt: skip
        self.starts += 1
        weakref.finalize(self, _kill_quietly, self._process)

    def signal(self, signum: int) -> None:
        self._stopped_on_purpose = True
        process = self._process
        if process is not None and process.poll() is None:
            os.kill(process.pid, signum)

    def wait_or_kill(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the JVM to exit, then SIGKILL it."""
        process = self._process
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            _log.debug("node %d (pid %d) still running after %g s; killing it", self.node_id, process.pid, timeout)
            self.kill()

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash or a power cut of that machine would end it."""
        self.signal(signal.SIGKILL)
        if self._process is not None:
            self._process.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """A controlled shutdown (SIGTERM); SIGKILL if it has not exited after ``STOP_TIMEOUT_S``."""
        self.signal(signal.SIGTERM)
        self.wait_or_kill(STOP_TIMEOUT_S)

    def started(self) -> bool:
        """True once this run of the JVM logged that the server started."""
        if not self.running or not self.log_path.exists():
            return False
        text = self.log_path.read_text(errors="replace")
        this_run = text[text.rfind(f"--- start {self.starts} ---"):]
        return "Kafka Server started" in this_run

    def check_alive(self) -> None:
        """Raise if the JVM died on its own (not stopped or killed by the test)."""
        if self._process is not None and self._process.poll() is not None and not self._stopped_on_purpose:
            raise RuntimeError(
                f"Kafka node {self.node_id} exited with status {self._process.returncode}; its log ends:\n"
                + self.log_tail()
            )

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _kill_quietly(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_TIMEOUT_S)


class ProxyGroup:
    """The proxies in front of every node's CLIENT listener, cut and restored together."""

    def __init__(self, proxies: Sequence[TcpProxy]) -> None:
        self._proxies = list(proxies)

    def cut(self) -> None:
        for proxy in self._proxies:
            proxy.cut()

    def restore(self) -> None:
        for proxy in self._proxies:
            proxy.restore()


# --- the cluster ----------------------------------------------------------------------------------


class KafkaCluster:
    """``nodes`` Apache Kafka brokers (each also a controller) for the length of a ``with`` block."""

    def __init__(
        self,
        nodes: int = 1,
        *,
        workdir: Path | None = None,
        with_proxy: bool = False,
        users: Mapping[str, str] | None = None,
        tls: TlsFiles | None = None,
        authorizer: bool = False,
        broker_config: Mapping[str, str] | None = None,
        heap: str = "512m",
        client_port: int | None = None,
    ) -> None:
        if nodes not in (1, 3):
            raise ValueError(f"nodes must be 1 or 3 (a 1- or 3-voter quorum), not {nodes}")
        if client_port is not None and (nodes != 1 or with_proxy):
            raise ValueError("client_port is for one node without a proxy")
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="sentinel-kafka-"))
        self.users = dict(users or {})
        self.tls = tls
        self.authorizer = authorizer
        self.broker_config = {key: str(value) for key, value in (broker_config or {}).items()}
        self.heap = heap
        self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        self.listener_protocols = {"CLIENT": "PLAINTEXT", "INTERNAL": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        if self.users:
            self.listener_protocols["SASL"] = "SASL_PLAINTEXT"
        if tls is not None:
            self.listener_protocols |= {"SSL": "SSL", "MTLS": "SSL"}
        self.listener_names = list(self.listener_protocols)
        self._classpath: str | None = None
        self.nodes: list[KafkaNode] = []
        self.nodes = [KafkaNode(self, node_id) for node_id in range(1, nodes + 1)]
        if client_port is not None:  # a broker that clients were told about before it existed
            self.nodes[0].ports["CLIENT"] = client_port
        self.proxy: ProxyGroup | None = None
        if with_proxy:
            for node in self.nodes:
                node.proxy = TcpProxy(HOST, node.ports["CLIENT"])
            self.proxy = ProxyGroup([node.proxy for node in self.nodes if node.proxy is not None])
        self._formatted = False

    # -- addresses --

    def bootstrap(self, listener: str = "CLIENT") -> str:
        """Every node's address on ``listener`` (as advertised), comma separated."""
        return ",".join(node.advertised(listener) for node in self.nodes)

    @property
    def bootstrap_servers(self) -> str:
        return self.bootstrap("CLIENT")

    def brokers(self, listener: str = "CLIENT") -> list[str]:
        return [node.advertised(listener) for node in self.nodes]

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    # -- life cycle --

    def java_command(self, main_class: str, *, heap: str) -> list[str]:
        java, _ = require_tools()
        if self._classpath is None:
            self._classpath = kafka_classpath()
        log_config = self.workdir / "log4j2.properties"
        if not log_config.exists():
            log_config.write_text(_LOG4J2)
        return [
            java, f"-Xmx{heap}", "-Xms64m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={log_config}", "-cp", self._classpath, main_class,
        ]  # fmt: skip

    def start(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Format storage (the first time), start every node, and wait until metadata lists them all."""
        try:
            if self.tls is not None:
                keystore = self.workdir / "server-keystore.pem"
                keystore.write_bytes(self.tls.server_key.read_bytes() + self.tls.server_cert.read_bytes())
            for node in self.nodes:
                if node.proxy is not None and not node.proxy.listening:
                    node.proxy.start()
            if not self._formatted:
                for node in self.nodes:
                    node.format_storage()
                self._formatted = True
            for node in self.nodes:
                node.start()
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """End every node by its process id, and the proxies; the work directory is removed if it was ours.

        SIGTERM to all nodes at once, then SIGKILL what is still running after a few seconds (the
        last nodes of a quorum cannot finish a controlled shutdown once the others are gone).
        """
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for node in self.nodes:
            node.wait_or_kill(max(0.0, deadline - time.monotonic()))
        for node in self.nodes:
            if node.proxy is not None:
                node.proxy.close()
        if self._own_workdir and not os.environ.get("SENTINEL_KEEP_KAFKA_LOGS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc is not None:
            for node in self.nodes:
                _log.warning("node %d log tail:\n%s", node.node_id, node.log_tail(15))
        self.stop()

    def kill(self, node_id: int) -> None:
        self.node(node_id).kill()

    def restart(self, node_id: int, *, kill: bool = False, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Stop (or SIGKILL) one node and start it again on the same ports and log directory."""
        node = self.node(node_id)
        node.kill() if kill else node.stop()
        self.start_node(node_id, timeout=timeout)

    def start_node(self, node_id: int, timeout: float = STARTUP_TIMEOUT_S) -> None:
        self.node(node_id).start()
        self.wait_ready(timeout)

    def running_nodes(self) -> list[KafkaNode]:
        return [node for node in self.nodes if node.running]

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT_S) -> None:
        """Wait until every running node says it has started and metadata lists each as an unfenced broker."""

        def ready() -> bool:
            for node in self.nodes:
                node.check_alive()
            running = self.running_nodes()
            if not running or not all(node.started() for node in running):
                return not running
            try:
                with self.admin() as admin:
                    brokers = admin.describe_cluster()["brokers"]
            except Exception as exc:
                _log.debug("metadata not ready: %s", exc)
                return False
            listed = {broker["broker_id"] for broker in brokers if not broker.get("is_fenced")}
            return {node.node_id for node in running} <= listed

        wait_until(ready, timeout, interval=0.25, description=f"{len(self.running_nodes())} Kafka nodes ready")

    # -- admin --

    @contextlib.contextmanager
    def admin(self) -> Any:
        """A KafkaAdminClient on the INTERNAL listeners of the running nodes (a super user)."""
        servers = [node.address("INTERNAL") for node in self.running_nodes()]
        if not servers:
            raise RuntimeError("no Kafka node is running")
        if not any(_port_open(server) for server in servers):
            raise ConnectionError(f"no INTERNAL listener answers: {servers}")
        admin = KafkaAdminClient(
            bootstrap_servers=servers, client_id=CLIENT_ID, request_timeout_ms=10_000, bootstrap_timeout_ms=5_000
        )
        try:
            yield admin
        finally:
            admin.close()

    def create_topic(
        self,
        name: str,
        partitions: int = 1,
        replication_factor: int | None = None,
        config: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> str:
        """Create ``name`` (an existing one is left as it is) and wait until every partition has a leader."""
        factor = replication_factor or len(self.nodes)
        with self.admin() as admin:
            try:
                admin.create_topics([NewTopic(name, partitions, factor, topic_configs=dict(config or {}))])
            except TopicAlreadyExistsError:
                _log.debug("topic %s already exists", name)
        wait_until(
            lambda: (leaders := self.partition_leaders(name)) and len(leaders) == partitions
            and all(leader >= 0 for leader in leaders.values()),
            timeout, interval=0.2, description=f"leaders for every partition of {name}",
        )  # fmt: skip
        return name

    def describe_partitions(self, topic: str) -> list[dict[str, Any]]:
        with self.admin() as admin:
            (described,) = admin.describe_topics([topic])
        if described.get("error_code"):
            return []
        return sorted(described["partitions"], key=lambda partition: partition["partition_index"])

    def partition_leaders(self, topic: str) -> dict[int, int]:
        """Partition -> leader node id (-1 while it has none)."""
        try:
            return {p["partition_index"]: p["leader_id"] for p in self.describe_partitions(topic)}
        except Exception as exc:
            _log.debug("describe %s failed: %s", topic, exc)
            return {}

    def wait_in_sync(self, topic: str, timeout: float = 120.0) -> None:
        """Wait until every replica of every partition of ``topic`` is back in sync."""

        def in_sync() -> bool:
            try:
                partitions = self.describe_partitions(topic)
            except Exception:
                return False
            return bool(partitions) and all(
                p["leader_id"] >= 0 and set(p["isr_nodes"]) == set(p["replica_nodes"]) for p in partitions
            )

        wait_until(in_sync, timeout, interval=0.25, description=f"every replica of {topic} in sync")

    def allow(self, principal: str, topic: str, operations: Iterable[str] = ("WRITE", "DESCRIBE")) -> None:
        """Grant ``principal`` (``User:alice``) the ``operations`` on ``topic``."""
        acls = [
            ACL(principal, "*", ACLOperation[operation], ACLPermissionType.ALLOW,
                ResourcePattern(ResourceType.TOPIC, topic))
            for operation in operations
        ]  # fmt: skip
        with self.admin() as admin:
            result = admin.create_acls(acls)
        if result.get("failed"):
            raise RuntimeError(f"creating ACLs failed: {result['failed']}")

    def read_topic(self, topic: str, expected: int | None = None, timeout: float = 60.0) -> list[ConsumerRecord]:
        """Every record of every partition of ``topic`` (read on INTERNAL), ordered by partition and offset.

        Same contract as ``EmbeddedBroker.read_topic``: waits for at least ``expected`` records and
        for the end of every partition; duplicates are returned too.
        """
        return read_records([node.address("INTERNAL") for node in self.running_nodes()], topic, expected, timeout)

def _port_open(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False

