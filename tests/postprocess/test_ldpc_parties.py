"""The two halves of the LDPC reconciliation (``LdpcAlice``, ``LdpcBob``) in two threads over the
node's authenticated TCP channel give what ``ldpc`` gives with both in one process."""

import hashlib
import threading

import numpy as np
import pytest

from controller.channel import open_pair
from controller.postprocess import ldpc
from controller.postprocess.channel import LocalChannel
from controller.postprocess.peer import PeerInputError


def _pair(seed, n, qber):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    return a, a ^ (rng.random(n) < qber).astype(np.uint8)


class _Log(LocalChannel):
    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, sender, payload, **kw):
        self.sent.append((sender, hashlib.sha256(np.asarray(payload).tobytes()).hexdigest()))
        super().send(sender, payload, **kw)


def _alice(ch, key, qber, seed, options, out):
    try:
        with ldpc.LdpcAlice(key, qber, rng=np.random.default_rng(seed), **options) as alice:
            alice.open(ch)
            while alice.reveal(ch):
                pass
            out["failed"] = alice.failed
    except Exception as exc:    # noqa: BLE001 - reported by the test
        out["error"] = exc


def _bob(ch, key, qber, options):
    with ldpc.LdpcBob(key, qber, ch, **options) as bob:
        while bob.attempt(ch):
            bob.learn(ch)
        return bob.key, bob.failed


@pytest.mark.parametrize("qber,n,seed,options", [
    (0.02, 230_000, 41, {}),                                          # two frames, one pre step
    (0.05, 8000, 42, {"frame_bits": 2000, "f_start": 1.0, "steps": 1}),   # retries, key-bit reveals
])
def test_halves_over_tcp_give_what_one_process_gives(qber, n, seed, options):
    a, b = _pair(seed, n, qber)
    local = _Log()
    want_key, want_failed = ldpc.ldpc(a, b, qber, local, seed=seed, rng=np.random.default_rng(seed), **options)
    assert want_failed == 0 and np.array_equal(want_key, a), f"seed {seed}"
    assert local.stats.rounds >= (5 if options else 1), "the retries were not exercised"
    alice_end, bob_end = open_pair(b"\x3c" * 4096, timeout=60)
    out = {}
    opts = dict(options, seed=seed)
    t = threading.Thread(target=_alice, args=(alice_end, a, qber, seed, opts, out))
    t.start()
    try:
        key, failed = _bob(bob_end, b, qber, opts)
    finally:
        t.join(120)
    try:
        assert "error" not in out, out.get("error")
        assert failed == out["failed"] == 0 and np.array_equal(key, want_key), f"seed {seed}"
        # both ends metered the same leak, and it is what crossed in one process
        assert alice_end.stats.leaked_bits == bob_end.stats.leaked_bits == local.stats.leaked_bits
        assert alice_end.stats.rounds == local.stats.rounds
    finally:
        alice_end.close()
        bob_end.close()


def test_bob_refuses_a_first_flight_of_other_options():
    # Alice plans with other blind steps than Bob: her header is not his plans
    a, b = _pair(43, 20_000, 0.05)
    ch = LocalChannel()
    with ldpc.LdpcAlice(a, 0.05, rng=np.random.default_rng(43), step_f=0.02) as alice:
        alice.open(ch)
        with pytest.raises(PeerInputError, match="frame plans"):
            ldpc.LdpcBob(b, 0.05, ch)
    assert not ldpc._BUFFERS.free or all(not x.any() for v in ldpc._BUFFERS.free.values() for x in v)


def test_unknown_and_bad_options_are_refused():
    a, _ = _pair(44, 1000, 0.05)
    with pytest.raises(TypeError, match="unknown LDPC options.*frame_size"):
        ldpc.LdpcAlice(a, 0.05, frame_size=500)
    with pytest.raises(ValueError, match="decoder must be one of"):
        ldpc.ldpc(a, a, 0.05, LocalChannel(), decoder="minsum")
    with pytest.raises(ValueError, match="pre must be in 0..max_retries = 3"):
        ldpc.ldpc(a, a, 0.05, LocalChannel(), pre=4, max_retries=3)


def test_frames_decoded_in_parallel_give_the_same_results():
    # three frames, two decoding threads: the same key, message log, leak and rounds
    a, b = _pair(45, 330_000, 0.03)
    runs = []
    for threads in (1, 2):
        ch = _Log()
        stats = ldpc.DecodeStats()
        key, failed = ldpc.ldpc(a, b, 0.03, ch, seed=45, rng=np.random.default_rng(45), threads=threads,
                                stats=stats)
        runs.append((key, failed, ch.sent, ch.stats.leaked_bits, ch.stats.rounds, stats))
    (k1, f1, log1, leak1, r1, s1), (k2, f2, log2, leak2, r2, s2) = runs
    assert f1 == f2 == 0 and np.array_equal(k1, a) and np.array_equal(k2, k1), "seed 45"
    assert log1 == log2 and leak1 == leak2 and r1 == r2
    # the decoding cost is summed over the three frames and their attempts, whichever thread ran them
    assert (s1.iterations, s1.edge_iterations) == (s2.iterations, s2.edge_iterations), "seed 45"
    assert s1.iterations >= 3 and s1.cpu_seconds > 0.0 and s2.cpu_seconds > 0.0
    with pytest.raises(ValueError, match="threads must be >= 1"):
        ldpc.ldpc(a, b, 0.03, LocalChannel(), threads=0)
