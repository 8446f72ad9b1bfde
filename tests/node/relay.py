"""A TCP relay for the node tests: a man in the middle of the classical channel that can edit bytes."""

import socket
import threading

__all__ = ["Relay", "UP", "DOWN"]

#: Directions of a relayed connection: from the client that dialled the relay to the target, and back.
UP, DOWN = "up", "down"


class Relay:
    """Relay every connection made to ``address`` (127.0.0.1, a free port) to ``target``.

    ``edit(direction, data, seen)`` (optional) sees each chunk as it passes: ``direction`` is
    ``UP`` (client to target) or ``DOWN``, ``seen`` the bytes that direction of that connection
    carried before the chunk; it returns the bytes to forward. ``sent`` holds every byte
    forwarded UP. Each connection ends when either side closes; ``close()`` stops accepting,
    ``cut()`` also drops every connection (the far end goes silent).
    """

    def __init__(self, target, edit=None):
        self.target, self.edit, self.sent = target, edit, bytearray()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[:2]
        self._stop = threading.Event()
        self._conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                down, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            up = socket.create_connection(self.target)
            self._conns += [down, up]
            threading.Thread(target=self._pipe, args=(down, up, UP), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, DOWN), daemon=True).start()

    def _pipe(self, src, dst, direction):
        seen = 0
        try:
            while data := src.recv(65536):
                n = len(data)
                if self.edit is not None:
                    data = self.edit(direction, data, seen)
                seen += n
                if direction == UP:
                    self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        """Stop accepting connections (those open run on until a side closes)."""
        self._stop.set()
        self.sock.close()

    def cut(self):
        """Stop accepting and drop every connection."""
        self.close()
        for conn in self._conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
