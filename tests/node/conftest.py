"""A node pair on the simulated bench (model boards over loopback TCP + optics), for the node tests.

Waits use generous wall-clock limits only so that a broken build fails instead of hanging; the
assertions are on counts and on simulated link time, never on wall-clock time.
"""

import time
from contextlib import contextmanager

import pytest

from controller.channel import AuthKeyPool
from controller.kms.store import KeyStore
from controller.metrics import Metrics
from controller.node.boards import AliceBoard, BobBoard
from controller.node.protocol import Protocol
from controller.node.runner import Node
from hil.demo import SimBench

LINK_TIMEOUT = 2.0       # model boards share two loaded cores with everything else
PROTO = Protocol(intensities=(0.5, 0.1, 0.0002), probabilities=(0.4, 0.4, 0.2), p_x=0.5)


def wait_until(cond, what, limit_s=120.0, seed=None):
    """Poll ``cond`` until true; fail (naming ``what`` and the seed) if it never becomes true."""
    end = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what} (seed {seed})")
        time.sleep(0.05)


class Pair:
    """Bench + Alice and Bob nodes sharing a pre-shared secret; ``bob_again()`` restarts Bob."""

    def __init__(self, tmp_path, *, seed, block_slots, distance_km=0.0, eve=0.0, efficiency=0.3):
        self.tmp, self.seed, self.block_slots = tmp_path, seed, block_slots
        self.bench = SimBench(distance_km=distance_km, proto=PROTO, eve_fraction=eve, seed=seed,
                              efficiency=efficiency).start()
        self.psk = tmp_path / "psk"
        AuthKeyPool.create_secret_file(self.psk, n_messages=1 << 14)
        self.stores = {r: KeyStore(tmp_path / r / "keys.db", tmp_path / r / "node.key")
                       for r in ("alice", "bob")}
        self.metrics = {r: Metrics(r, clock=self.clock) for r in ("alice", "bob")}
        self.alice = self._node("alice")
        self.bob = self._node("bob")
        self.alice.start()
        self.bob.start()

    def clock(self):
        return self.bench.sim_seconds

    @property
    def block_s(self):
        """Return one block's link time, in simulated seconds."""
        return self.block_slots / self.bench.slot_hz

    def _node(self, role):
        b = self.bench
        pool = AuthKeyPool.from_file(self.psk, state_path=self.tmp / role / "channel.state")
        board = (AliceBoard(b.alice_url, PROTO, slot_period=b.slot_period, frame_slots=b.frame_slots,
                            link_timeout=LINK_TIMEOUT)
                 if role == "alice" else
                 BobBoard(b.bob_url, slot_period=b.slot_period, frame_slots=b.frame_slots,
                          seed=self.seed, link_timeout=LINK_TIMEOUT))
        return Node(role, board, PROTO, self.block_slots, self.stores[role], pool,
                    metrics=self.metrics[role], clock=self.clock, name=role,
                    listen=("127.0.0.1", 0) if role == "alice" else None,
                    connect_to=self.alice.address if role == "bob" else None,
                    slot_hz=b.slot_hz, timeout_s=20.0, rng_seed=self.seed)

    def bob_again(self):
        """Stop Bob's node (as a crash would: mid-block, no goodbye) and start a new one."""
        self.bob.stop()
        self.bob = self._node("bob")
        self.bob.start()

    def wait_blocks(self, n, what=None):
        wait_until(lambda: self.alice.stats.blocks >= n and self.bob.stats.blocks >= n
                   or self.alice.error or self.bob.error, what or f"{n} blocks", seed=self.seed)
        assert not (self.alice.error or self.bob.error), (self.alice.error, self.bob.error, self.seed)

    def close(self):
        for node in (self.alice, self.bob):
            node.stop()
        self.bench.stop()
        for s in self.stores.values():
            s.close()


@pytest.fixture
def make_pair(tmp_path):
    pairs = []

    def make(**kw):
        pairs.append(Pair(tmp_path, **kw))
        return pairs[-1]

    yield make
    for p in pairs:
        p.close()
