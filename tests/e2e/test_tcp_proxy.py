"""The fault tests' network cut (tcp_proxy.py) does what they rely on."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.tcp_proxy import TcpProxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def _echo(conn: socket.socket) -> None:
    with conn:
        try:
            while data := conn.recv(1024):
                conn.sendall(data)
        except OSError:
            pass


def _roundtrip(port: int, conn: socket.socket | None = None) -> bytes:
    conn = conn or socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(b"ping")
    return conn.recv(4)


def _dead(port: int, conn: socket.socket | None = None) -> bool:
    """The link fails as a broken one does: reset, or closed without an answer
    (a few tries: the first write may still land in the socket buffer)."""
    try:
        return any(_roundtrip(port, conn) == b"" for _ in range(3))
    except OSError:
        return True


def test_forwards_until_cut_then_resets_old_and_new_connections_until_restored(echo_port):
    with TcpProxy(echo_port) as link:
        kept = socket.create_connection(("127.0.0.1", link.port), timeout=5)
        assert _roundtrip(link.port, kept) == b"ping"
        link.cut()
        assert _dead(link.port, kept), "an open connection survived the cut"
        assert _dead(link.port), "a new connection went through the cut"
        assert link.refused >= 1
        link.restore()
        assert _roundtrip(link.port) == b"ping"
        assert link.accepted == 2


def test_an_upstream_that_is_down_resets_the_client_and_is_counted():
    unused = socket.create_server(("127.0.0.1", 0))
    port = unused.getsockname()[1]
    unused.close()
    with TcpProxy(port) as link:
        assert _dead(link.port)
        assert link.upstream_down >= 1
        assert link.accepted == 0
