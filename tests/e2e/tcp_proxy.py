"""A TCP proxy whose network can be cut: the link between one agent (or the
CLI) and the api, for fault tests.

``cut()`` drops every open connection and resets each new one at once, as a
failed link does for a client (its pooled connections die, new ones fail);
``stall()`` holds every byte in flight without closing anything, as a link that
went silent does (nothing fails until a timeout notices); ``restore()`` forwards
again. The counters (``accepted``, ``refused``,
``upstream_down``) let a test wait for a client to have talked through the
proxy, or to have tried again.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

_CHUNK = 1 << 16


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.accepted = 0  # forwarded
        self.refused = 0  # reset because the link is cut
        self.upstream_down = 0  # reset because the upstream refused the connection
        self._cut = threading.Event()
        self._stalled = threading.Event()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._accept_loop, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self) -> None:
        """Drop every connection now and refuse new ones until restore()."""
        self._cut.set()
        with self._lock:
            sockets, self._open = self._open, set()
        for s in sockets:
            _reset(s)

    def stall(self) -> None:
        """Forward nothing more, and close nothing, until restore()."""
        self._stalled.set()

    def restore(self) -> None:
        self._cut.clear()
        self._stalled.clear()

    def close(self) -> None:
        self._closed.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def _accept_loop(self) -> None:
        self._listener.settimeout(0.2)
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            if self._cut.is_set():
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
            except OSError:
                self.upstream_down += 1
                _reset(client)  # the client sees its connection reset
                continue
            upstream.settimeout(None)
            with self._lock:
                self.accepted += 1
                self._open.update((client, upstream))
            pair = _Pair(client, upstream)
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, pair), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, pair: _Pair) -> None:
        try:
            while data := src.recv(_CHUNK):
                while self._stalled.is_set() and not self._closed.is_set():
                    time.sleep(0.05)
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)  # pass the half-close on
        except OSError:
            _reset(src)
            _reset(dst)
            return
        if pair.one_direction_done():  # both are: close the pair
            with self._lock:
                self._open.difference_update(pair.sockets)
            for s in pair.sockets:
                s.close()


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.sockets = (client, upstream)
        self._done = 0
        self._lock = threading.Lock()

    def one_direction_done(self) -> bool:
        """Count a finished direction; True for the second one."""
        with self._lock:
            self._done += 1
            return self._done == 2


def _reset(s: socket.socket) -> None:
    """Close with RST (SO_LINGER 0): the peer learns at once, as from a dead link."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
