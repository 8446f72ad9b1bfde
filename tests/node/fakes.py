"""Node pairs for the end-of-block fault tests: real nodes, channel, pools and stores; fake optics.

The boards and the distillation are replaced (``FakeAliceBoard``, ``FakeBobBoard``,
``fake_alice_block`` / ``fake_bob_block``) so that a block takes milliseconds: Alice's board
draws a seeded token per block, the fake distillation sends it to Bob as an untagged block-lane
frame and answers one, and both ends derive the block's key from ``(seed, token)``.  Everything
after the distillation -- the end-of-block exchange, the pending/commit records, the pad top-ups,
the resolution at reconnection -- is the node's own code.

A :class:`Fault` is a node's ``fault_hook``: at its point of its block it drops the link (closes
the TCP connection under both nodes), halts the node where it is (``Halt``: the thread ends,
files stay as they are, as after a crash) or, in a child process, SIGKILLs the process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from dataclasses import dataclass

import numpy as np

from controller.channel import AuthKeyPool
from controller.kms.store import KeyStore
from controller.metrics import Metrics
from controller.node import runner
from controller.node.protocol import BlockOutcome, Protocol
from controller.node.runner import Halt, Node

PROTO = Protocol()
KEY_BITS = 4096           # per block: half of it tops the pads up (the pool is kept below low water)
BLOCK_SLOTS = 1000


@dataclass
class FakeRecord:
    bits: np.ndarray
    token: int


class FakeAliceBoard:
    """Alice's board: each run is ``n_slots`` slots and a seeded token naming the block's key."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng([seed, 1])

    def run_block(self, n_slots, stop=None):
        return FakeRecord(np.zeros(n_slots, np.uint8), int(self.rng.integers(1 << 62))), 0

    def close(self):
        pass


class FakeBobBoard:
    def arm(self):
        pass

    def collect(self, played, timeout_s=None, stop_event=None):
        return played

    def close(self):
        pass


def block_key(seed: int, token: int) -> np.ndarray:
    return np.random.default_rng([seed, token]).integers(0, 2, KEY_BITS, dtype=np.uint8)


def install(monkeypatch, seed: int) -> None:
    """Replace the node's distillation by the fake one (both ends in this process)."""

    def alice_block(channel, record, proto, rng):
        channel.send("alice", json.dumps({"token": record.token}).encode())
        json.loads(bytes(channel.recv("alice")))
        return BlockOutcome(block_key(seed, record.token), {"sifted_bits": 2 * KEY_BITS})

    def bob_block(channel, det, proto):
        token = json.loads(bytes(channel.recv("bob")))["token"]
        channel.send("bob", b'{"ok": 1}')
        return BlockOutcome(block_key(seed, token), {"sifted_bits": 2 * KEY_BITS})

    if monkeypatch is None:
        runner.alice_block, runner.bob_block = alice_block, bob_block
    else:
        monkeypatch.setattr(runner, "alice_block", alice_block)
        monkeypatch.setattr(runner, "bob_block", bob_block)


class Fault:
    """A ``fault_hook``: at ``point`` of block ``block`` (-1: the resolution), do ``kind`` once."""

    def __init__(self, point: str, block: int, kind: str, node_of=None):
        if point not in runner.FAULT_POINTS:
            raise ValueError(f"unknown fault point {point!r}")
        if kind not in ("drop", "halt", "sigkill"):
            raise ValueError(f"unknown fault kind {kind!r}")
        self.point, self.block, self.kind, self.node_of = point, block, kind, node_of
        self.fired_at: float | None = None

    def __call__(self, point: str, n: int) -> None:
        if self.fired_at is not None or point != self.point or (self.block >= 0 and n != self.block):
            return
        self.fired_at = time.monotonic()
        if self.kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "halt":
            raise Halt(f"{point} of block {n}")
        node = self.node_of()
        if node.channel is not None:
            node.channel.close()                 # the TCP connection dies under both nodes


def make_node(role, folder, psk, seed, *, port=None, connect_to=None, fault_hook=None,
              metrics=None, timeout_s=3.0):
    """A node with fake boards on the store, pool state and secret in ``folder`` / ``psk``."""
    store = KeyStore(os.path.join(folder, "keys.db"), os.path.join(folder, "node.key"))
    pool = AuthKeyPool.from_file(psk, state_path=os.path.join(folder, "channel.state"))
    board = FakeAliceBoard(seed) if role == "alice" else FakeBobBoard()
    return Node(role, board, PROTO, BLOCK_SLOTS, store, pool, name=role, metrics=metrics,
                listen=("127.0.0.1", port) if role == "alice" else None, connect_to=connect_to,
                timeout_s=timeout_s, rng_seed=seed, fault_hook=fault_hook)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- what the tests check -------------------------------------------------------------------------

def link_blocks(folder) -> dict[str, str]:
    """Return ``{block_id: state}`` of a node's store (read directly, as an operator would)."""
    with sqlite3.connect(os.path.join(folder, "keys.db")) as db:
        return dict(db.execute("SELECT block_id, state FROM link_blocks"))


def key_material(folder) -> dict[str, bytes]:
    """Return ``{key_id: material}`` of every key not yet delivered in a node's store."""
    store = KeyStore(os.path.join(folder, "keys.db"), os.path.join(folder, "node.key"))
    try:
        rows = store._conn().execute("SELECT key_id, sealed FROM keys WHERE state = 'available'")
        return {kid: store._open(kid, b"raw", sealed) for kid, sealed in rows}
    finally:
        store.close()


def deliver_all(alice_folder, bob_folder) -> dict[str, bytes]:
    """Deliver every available key as the KMS does (Alice's KME master, Bob's slave); return them.

    Raises if the two stores cannot both deliver a key: a key held on one side only."""
    a = KeyStore(os.path.join(alice_folder, "keys.db"), os.path.join(alice_folder, "node.key"))
    b = KeyStore(os.path.join(bob_folder, "keys.db"), os.path.join(bob_folder, "node.key"))
    try:
        n = a.status().available
        if not n:
            return {}
        ids = a.claim(n, 256, "sae-a", "sae-b")
        b.reserve_for_slave(ids, "sae-a", "sae-b", 256)
        got_a = {k.key_id: k.material for k in a.deliver_claimed(ids)}
        got_b = {k.key_id: k.material for k in b.deliver_to_slave(ids, "sae-a", "sae-b")}
        assert got_a == got_b, "the two KMEs delivered different material under the same key IDs"
        return got_a
    finally:
        a.close()
        b.close()


def pads_in_step(pools) -> tuple[int, int]:
    """Compare two nodes' pools (Alice's, Bob's); return (generation, pads compared).

    Raises AssertionError if they applied different numbers of top-ups, end their streams at
    different indices, or hold different pad bytes at an index both still hold."""
    gens = [p.generation for p in pools]
    assert gens[0] == gens[1], f"pad generations differ: {gens}"
    ends = [p._ends[p.generation] for p in pools]
    assert ends[0] == ends[1], f"pad streams end at different indices: {ends}"
    compared = 0
    for party in ("alice", "bob"):
        lo = max(p._base[party] for p in pools)
        hi = ends[0][("alice", "bob").index(party)]
        held = [bytes(p._pads[party][(lo - p._base[party]) * 16:(hi - p._base[party]) * 16])
                for p in pools]
        assert held[0] == held[1], f"{party}'s pads differ between the nodes in [{lo}, {hi})"
        compared += max(hi - lo, 0)
    return gens[0], compared
