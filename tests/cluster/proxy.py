"""A TCP proxy in a thread, between one node and PostgreSQL, that a test can cut.

Cutting closes every proxied connection on both sides (the server ends those
sessions at once, the node sees its connection fail) and refuses new ones
until ``heal``: a node cut off from the database while the others reach it.
"""

from __future__ import annotations

import selectors
import socket
import threading

from tests.peers import free_port


class Proxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.port = free_port("tcp")
        self._selector = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._pairs: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._stopping = False
        # Wakes the loop when the test changes something.
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name=f"pg-proxy-{self.port}", daemon=True)

    def start(self) -> "Proxy":
        self.heal()
        self._thread.start()
        return self

    def dsn(self, dsn: str) -> str:
        """``dsn`` with the server's port replaced by the proxy's."""
        return dsn.replace(f":{self.target[1]}/", f":{self.port}/")

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._selector.unregister(self._listener)
                self._listener.close()
                self._listener = None
            for sock in list(self._pairs):
                self._drop(sock)
        self._wake_w.send(b"x")

    def heal(self) -> None:
        with self._lock:
            if self._listener is not None:
                return
            listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(64)
            listener.setblocking(False)
            self._listener = listener
            self._selector.register(listener, selectors.EVENT_READ, "accept")
        self._wake_w.send(b"x")

    def stop(self) -> None:
        self._stopping = True
        self.cut()
        if self._thread.is_alive():
            self._thread.join(5)
        self._selector.close()
        self._wake_r.close()
        self._wake_w.close()

    def _drop(self, sock: socket.socket) -> None:
        other = self._pairs.pop(sock, None)
        for s in (sock, other):
            if s is None:
                continue
            self._pairs.pop(s, None)
            try:
                self._selector.unregister(s)
            except (KeyError, ValueError):
                pass
            s.close()

    def _run(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select(timeout=0.5):
                with self._lock:
                    self._handle(key)

    def _handle(self, key: selectors.SelectorKey) -> None:
        sock = key.fileobj
        if key.data == "wake":
            sock.recv(1024)
        elif key.data == "accept":
            if sock is not self._listener:
                return  # cut meanwhile
            client, _ = sock.accept()
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                return
            for s in (client, server):
                s.setblocking(True)
                self._selector.register(s, selectors.EVENT_READ, "data")
            self._pairs[client] = server
            self._pairs[server] = client
        elif sock in self._pairs:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                self._drop(sock)
                return
            try:
                self._pairs[sock].sendall(data)
            except OSError:
                self._drop(sock)
