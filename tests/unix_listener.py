"""A host AF_UNIX listener for the isolation tests: a candidate that reaches it is counted (it answers b"42",
so a connection that works looks like one)."""

from __future__ import annotations

import os
import socket
import threading
import time


class UnixListener:
    """A host AF_UNIX server at `path` that answers b"42" and counts connections; `close` removes it."""

    def __init__(self, path: str) -> None:
        self.path, self.connections = path, 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o777)
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            try:
                conn.settimeout(1)
                conn.recv(16)
                conn.sendall(b"42")
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()
        os.unlink(self.path)
