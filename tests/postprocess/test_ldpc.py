"""LDPC reconciliation: decoding, exact leak accounting, rate adaptation, reported failures."""

import math

import numpy as np
import pytest

from controller.postprocess import _ldpc_core as core
from controller.postprocess import ldpc
from controller.postprocess.channel import LocalChannel
from controller.postprocess.infotheory import h2
from controller.postprocess.reconcile import reconcile


def _pair(seed, n, qber):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < qber).astype(np.uint8)
    return a, b


class RecordingChannel(LocalChannel):
    """A local channel that also keeps (sender, bits, leaks, tag) of every message."""

    def __init__(self):
        super().__init__()
        self.log = []

    def send(self, sender, payload, *, bits=None, leaks_key=False, tag=""):
        before = self.stats.bits
        super().send(sender, payload, bits=bits, leaks_key=leaks_key, tag=tag)
        self.log.append((sender, self.stats.bits - before, leaks_key, tag))


@pytest.mark.parametrize("seed", [11, 12])
def test_layered_decoder_recovers_a_noisy_word(seed):
    plan = ldpc.plan_frame(8000, 0.04, f_start=1.25, steps=0)
    chk_ptr, chk_var = ldpc.code(plan.n, plan.m)
    a, b = _pair(seed, plan.n, 0.04)
    l0 = math.log(0.96 / 0.04)
    llr = np.where(b == 0, l0, -l0).astype(np.float32)
    bits, iters, ok = core.decode(chk_ptr, chk_var, core.syndrome(chk_ptr, chk_var, a), llr, 100, core.PHI, core.PHI_LOW)
    assert ok and np.array_equal(bits, a), f"seed {seed}: {int((bits != a).sum())} errors left"
    assert 1 <= iters < 100


@pytest.mark.parametrize("qber,seed", [(0.03, 1), (0.08, 2)])
def test_ldpc_corrects_and_leak_is_exactly_what_crossed(qber, seed):
    a, b = _pair(seed, 30_000, qber)
    ch = RecordingChannel()
    fixed, rep = reconcile(a, b, qber, method="ldpc", channel=ch, seed=seed, frame_bits=15_000,
                           rng=np.random.default_rng(seed))
    assert np.array_equal(fixed, a), f"seed {seed}"
    assert rep.failed_frames == 0
    leaked = sum(bits for sender, bits, leaks, _ in ch.log if leaks)
    assert rep.leaked_bits == leaked == ch.stats.leaked_bits
    assert rep.messages == len(ch.log) and rep.wire_bits == sum(bits for _, bits, _, _ in ch.log)
    plans = [ldpc.plan_frame(15_000, qber)] * 2
    # first flight: syndromes (m - p leaked per frame), pads (p, not leaked), 61-bit tag per frame
    syndrome_bits, pad_bits = ch.log[1][1], ch.log[2][1]
    assert syndrome_bits == sum(p.m - p.p for p in plans) and ch.log[1][2]
    assert pad_bits == sum(p.p for p in plans) and not ch.log[2][2]
    assert ch.log[4][1] == 61 * 2 and ch.log[4][2]
    reveals = [bits for sender, bits, leaks, _ in ch.log[5:] if sender == "alice"]
    assert all(leaks for sender, _, leaks, _ in ch.log[5:] if sender == "alice")
    assert leaked == syndrome_bits + 61 * 2 + sum(reveals)
    assert all(r % plans[0].delta == 0 for r in reveals)
    assert rep.efficiency >= 1.04 * 0.999


@pytest.mark.parametrize("warm", [False, True])
def test_every_message_is_consumed_and_retries_converge(warm):
    a, b = _pair(5, 6000, 0.05)
    ch = LocalChannel()
    fixed, failed = ldpc.ldpc(a, b, 0.05, ch, seed=5, f_start=1.0, warm=warm, rng=np.random.default_rng(5))
    assert failed == 0 and np.array_equal(fixed, a), f"seed 5 warm {warm}"
    assert ch.pending("alice") == 0 and ch.pending("bob") == 0
    assert ch.stats.rounds >= 2       # f_start = 1 is below any code's threshold: blind retries ran


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.05, 0.08, 0.11, 0.15])
@pytest.mark.parametrize("k", [1000, 20_000, 100_000])
def test_plan_frame_picks_valid_puncture_and_shorten_counts(qber, k):
    plan = ldpc.plan_frame(k, qber, f_start=1.04, step_f=0.01, steps=14)
    hk = k * h2(qber)
    assert plan.m - plan.p == math.ceil(1.04 * hk)
    assert plan.delta == math.ceil(0.01 * hk) and plan.p == 14 * plan.delta
    assert plan.n == plan.k + plan.p and 0.2 <= plan.rate < 1.0
    punct = ldpc.punctured(plan, seed=9)
    assert punct.size == plan.p == np.unique(punct).size
    assert np.all(punct % 2 == 1) and np.all(punct + 1 < plan.m)   # no check holds two
    chk_ptr, chk_var = ldpc.code(plan.n, plan.m) if k <= 20_000 else (None, None)
    if chk_ptr is not None:
        assert chk_ptr[-1] == chk_var.size and chk_var.max() < plan.n
        degrees = np.bincount(chk_var, minlength=plan.n)
        assert np.all(degrees[plan.n - plan.m + punct] == 2)   # punctured bits: staircase


def test_plan_frame_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="at least 64"):
        ldpc.plan_frame(10, 0.02)
    with pytest.raises(ValueError, match="use Cascade"):
        ldpc.plan_frame(10_000, 0.3)
    with pytest.raises(ValueError, match="qber"):
        ldpc.plan_frame(10_000, 0.0)
    with pytest.raises(ValueError, match="punctured"):
        ldpc.plan_frame(10_000, 0.05, step_f=0.02, steps=100)
    with pytest.raises(ValueError, match="at least 64 bits"):
        reconcile(np.zeros(10, np.uint8), np.zeros(10, np.uint8), 0.02, method="ldpc")
    with pytest.raises(ValueError, match="use Cascade"):
        a, b = _pair(1, 1000, 0.3)
        reconcile(a, b, 0.3, method="ldpc")


def test_code_is_deterministic_from_its_seed():
    one = ldpc.code(5000, 1200, seed=77)
    ldpc._CODES.clear()
    two = ldpc.code(5000, 1200, seed=77)
    other = ldpc.code(5000, 1200, seed=78)
    assert all(np.array_equal(x, y) for x, y in zip(one, two))
    assert not np.array_equal(one[1], other[1])


def test_failure_is_reported_when_the_qber_is_far_above_design():
    a, b = _pair(3, 8000, 0.10)            # 10 % errors, designed for 2 %
    ch = LocalChannel()
    fixed, rep = reconcile(a, b, 0.02, method="ldpc", channel=ch, seed=3, max_retries=2,
                           rng=np.random.default_rng(3))
    assert rep.failed_frames == 1, "seed 3"
    assert not np.array_equal(fixed, a)
    assert rep.leaked_bits == ch.stats.leaked_bits
