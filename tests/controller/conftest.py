"""Fixtures of the controller tests: a behavioural board on TCP, and a server that never answers."""

import socket
import threading

import pytest
from hil.model import ModelBoard, ModelServer



@pytest.fixture
def model():
    """Serve a fresh ModelBoard on 127.0.0.1; yield the ModelServer."""
    with ModelServer(ModelBoard()) as server:
        yield server


@pytest.fixture
def model_factory():
    """Return a function that serves a ModelBoard built with the given options."""
    servers = []

    def make(**options):
        server = ModelServer(ModelBoard(**options)).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def silent_server():
    """A TCP server that accepts connections and never answers; yield its socket:// URL."""
    listener = socket.create_server(("127.0.0.1", 0))
    conns = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                conns.append(conn)
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"socket://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in conns:
        conn.close()
    listener.close()
