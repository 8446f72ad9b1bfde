"""Both halves of a block meter the same leak, whatever the channel's reader thread does first.

The node's channel counts a received message on its reader thread when it arrives, not when the
protocol reads it.  Bob once took his leak snapshot after reading Alice's verdict, so Cascade
frames Alice sent right after it could already be counted: his leak came out smaller than hers,
the two ends computed different key lengths and the block was voided as tampering.  Here Bob
reads the verdict late on purpose, so that Alice's first Cascade frames are already counted.
"""

import threading
import time

import numpy as np
import pytest

from controller.channel import open_pair
from controller.node import protocol as proto_mod
from controller.node.protocol import Protocol, alice_block, bob_block
from controller.postprocess.sift import AliceRecord, BobDetections


def _block(seed: int, n_slots: int = 2_000_000, eta: float = 0.5, dark: float = 1e-4,
           qber: float = 0.02):
    rng = np.random.default_rng(seed)
    p = Protocol()
    intens = rng.choice(len(p.intensities), size=n_slots, p=p.probabilities).astype(np.uint8)
    bases = (rng.random(n_slots) < p.p_x).astype(np.uint8)
    bits = rng.integers(0, 2, n_slots, dtype=np.uint8)
    record = AliceRecord(bits, bases, intens, np.ones(n_slots, dtype=bool))
    mu = np.asarray(p.intensities)[intens]
    slots = np.flatnonzero(rng.random(n_slots) < 1 - np.exp(-eta * mu) + dark)
    bob_bases = np.where(rng.random(slots.size) < 0.9, bases[slots],
                         rng.integers(0, 2, slots.size)).astype(np.uint8)
    same = bob_bases == bases[slots]
    bob_bits = np.where(same, bits[slots] ^ (rng.random(slots.size) < qber),
                        rng.integers(0, 2, slots.size)).astype(np.uint8)
    return p, record, BobDetections(slots.astype(np.int64), bob_bases, bob_bits)


def run_block(p, record, det, seed):
    """Run Alice's half in a thread and Bob's here over the authenticated TCP channel; return
    (Alice's outcome, Bob's outcome, round trips on Alice's end)."""
    alice, bob = open_pair(b"\x5a" * 4096, timeout=60)
    out = {}

    def run_alice():
        try:
            out["alice"] = alice_block(alice, record, p, np.random.default_rng(seed + 100))
        except Exception as exc:  # noqa: BLE001 - raised below
            out["error"] = exc

    t = threading.Thread(target=run_alice)
    t.start()
    try:
        out["bob"] = bob_block(bob, det, p)
    finally:
        t.join(120)
        rounds = alice.stats.rounds
        alice.close()
        bob.close()
    if "error" in out:
        raise out["error"]
    return out["alice"], out["bob"], rounds


@pytest.mark.parametrize("seed", [3, 4])
def test_both_ends_meter_the_same_leak_when_bob_reads_late(seed, monkeypatch):
    p, record, det = _block(seed)
    real_recv_json = proto_mod._recv_json

    def late_recv_json(ch, who):
        time.sleep(0.5)            # Alice's verdict and first Cascade frames arrive meanwhile
        return real_recv_json(ch, who)

    monkeypatch.setattr(proto_mod, "_recv_json", late_recv_json)
    a, b, _ = run_block(p, record, det, seed)
    assert a.abort is None and b.abort is None, (seed, a.abort, b.abort)
    assert a.figures["leak_ec_bits"] == b.figures["leak_ec_bits"] > 0, (seed, a.figures, b.figures)
    assert a.figures["secret_bits"] == b.figures["secret_bits"], seed
    assert a.key is not None and np.array_equal(a.key, b.key), seed
    # and so the same reconciliation efficiency (Cascade's low-round mode, ~1e5 bits at ~2-3 %)
    assert a.figures["ec_efficiency"] == b.figures["ec_efficiency"], seed
    assert 1.0 < a.figures["ec_efficiency"] < 1.15, (seed, a.figures)
