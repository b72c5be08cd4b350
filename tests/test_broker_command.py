"""``sentinel-durable broker`` and the reprs of the test helpers: signals, a busy port, state at a glance."""

from __future__ import annotations

import errno
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import CLI, free_port

from sentinel_durable.testing import EmbeddedBroker, TcpProxy, wait_until


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found.update(int(child) for child in (task / "children").read_text().split())
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by its parent) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


@pytest.fixture
def broker_command() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    """A running ``sentinel-durable broker``: (its process, its port, the pid of its Tansu child)."""
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "broker", "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    tansu: set[int] = set()
    try:
        assert process.stdout is not None
        assert f"127.0.0.1:{port}" in process.stdout.readline()
        tansu = children(process.pid)
        assert len(tansu) == 1
        yield process, port, next(iter(tansu))
    finally:
        for pid in [process.pid, *tansu]:  # whatever outlived the test, by pid
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_broker_command_stops_its_broker_on_signal(
    broker_command: tuple[subprocess.Popen[str], int, int], signum: int
) -> None:
    process, port, tansu = broker_command
    process.send_signal(signum)
    assert process.wait(timeout=30) == 128 + signum
    assert process.stderr is not None
    assert process.stderr.read() == f"sentinel-durable: stopped by {signal.Signals(signum).name}\n"
    wait_until(lambda: not alive(tansu), 10, description="the Tansu child to exit")
    assert not listening(port)


def test_broker_command_on_a_busy_port_says_address_in_use() -> None:
    with EmbeddedBroker() as other:  # a Kafka broker already there would answer a readiness probe
        port = int(other.bootstrap_servers.rsplit(":", 1)[1])
        result = subprocess.run([*CLI, "broker", "--port", str(port)], capture_output=True, text=True, timeout=60)
        assert other.running
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"sentinel-durable: cannot listen on 127.0.0.1:{port}: address in use"
        " (another process has the port; choose another with --port)\n"
    )


def test_embedded_broker_on_a_port_taken_by_anything_raises_address_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}: address in use") as raised:
            broker.start()
    assert raised.value.errno == errno.EADDRINUSE
    assert not broker.running


def test_embedded_broker_repr_shows_address_state_and_pid() -> None:
    broker = EmbeddedBroker(with_proxy=True)
    assert repr(broker) == "<EmbeddedBroker stopped>"
    with broker:
        proxy = broker.proxy
        assert proxy is not None
        port = broker.bootstrap_servers
        text = repr(broker)
        assert text.startswith(f"<EmbeddedBroker {port} running pid={broker.pid} broker=127.0.0.1:")
        assert f"proxy=<TcpProxy {port} -> 127.0.0.1:" in text
        assert "listening" in text
        proxy.cut()
        assert repr(broker).endswith(" cut>>")
    assert repr(broker) == "<EmbeddedBroker stopped>"
    assert repr(EmbeddedBroker(port=9092)) == "<EmbeddedBroker stopped port=9092>"


def test_tcp_proxy_repr_shows_listen_target_and_cut() -> None:
    proxy = TcpProxy("127.0.0.1", 9)
    assert repr(proxy) == "<TcpProxy 127.0.0.1:0 -> 127.0.0.1:9 not started>"
    with proxy:
        assert repr(proxy) == f"<TcpProxy 127.0.0.1:{proxy.port} -> 127.0.0.1:9 listening, 0 connections>"
        proxy.cut()
        assert repr(proxy) == f"<TcpProxy 127.0.0.1:{proxy.port} -> 127.0.0.1:9 cut>"
        proxy.restore()
        assert "listening" in repr(proxy)
