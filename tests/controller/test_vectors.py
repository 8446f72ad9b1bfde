"""The shared link vectors: up to date with their generator, and replayed byte-exact on the model."""

import importlib.util
import json
import socket
from pathlib import Path

import pytest

from gateware.spec.protocol import PROTOCOL_VERSION

VECTORS = Path(__file__).parents[1] / "vectors"


def _generator():
    spec = importlib.util.spec_from_file_location("make_link_vectors", VECTORS / "make_link_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def session():
    return json.loads((VECTORS / "link_session.json").read_text())


def test_vectors_are_fresh():
    stored = (VECTORS / "link_session.json").read_text()
    assert stored == _generator().render(), (
        "tests/vectors/link_session.json is stale: run python tests/vectors/make_link_vectors.py")


def test_vectors_cover_the_protocol_version(session):
    assert session["protocol_version"] == PROTOCOL_VERSION
    notes = " ".join(step["note"] for step in session["steps"])
    for needed in ("BAD_", "read-only", "retry", "CRC bit flipped", "bad COBS", "garbage", "shorter",
                   "link.bad_requests"):
        assert needed in notes or needed.lower() in notes.lower(), needed


def _recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "model closed the connection"
        data += chunk
    return bytes(data)


def test_vectors_replay_on_model(model, session):
    """Each reply comes back exactly; a dropped frame's absence shows as the next reply arriving next."""
    with socket.create_connection((model.host, model.port), timeout=2) as sock:
        for i, step in enumerate(session["steps"]):
            sock.sendall(bytes.fromhex(step["request"]))
            if step["reply"] is None:
                continue
            want = bytes.fromhex(step["reply"])
            got = _recv_exact(sock, len(want))
            assert got == want, f"step {i} ({step['note']}): got {got.hex()}, want {want.hex()}"
        sock.settimeout(0.05)
        with pytest.raises(socket.timeout):
            extra = sock.recv(1)
            pytest.fail(f"model sent bytes nobody asked for: {extra.hex()}")
