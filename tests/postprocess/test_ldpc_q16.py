"""The fixed-point LDPC decoder "q16" (``_ldpc_q16``): tables, the IR row pass against the scalar
reference bit for bit, the float32 entry point, reconciliation with it (and its amin fallback)."""

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from controller.postprocess import _ldpc_core as core
from controller.postprocess import _ldpc_q16 as q16
from controller.postprocess import ldpc
from controller.postprocess.reconcile import reconcile

# the kernel's byte shuffles and gathers need AVX2 (without it LLVM would abort the process)
avx2 = pytest.mark.skipif(not q16.AVX2, reason="numba does not compile for AVX2 here")


def _frame(qber, seed, k):
    """(code, ssign, priors) of one k-bit frame at QBER qber: a random word of the frame's code
    layout (shortened bits 0), its syndrome signs, Bob's priors (i.i.d. errors; punctured bits
    prior 0, shortened ones known)."""
    plan = ldpc.plan_frame(k, qber)
    c = ldpc.code(plan)
    lay = ldpc.layout(plan, seed)
    rng = np.random.default_rng(seed)
    word = rng.integers(0, 2, plan.n).astype(np.uint8)
    word[lay.short] = 0
    ssign = np.where(ldpc.syndrome(c, word) == 0, 1.0, -1.0).astype(np.float32)
    l0 = np.float32(math.log((1 - qber) / qber))
    bob = word ^ (rng.random(plan.n) < qber).astype(np.uint8)
    llr = np.zeros(plan.n, np.float32)
    llr[lay.key_pos] = np.where(bob[lay.key_pos] == 0, l0, -l0)
    llr[lay.short] = core.LLR_KNOWN
    return c, ssign, llr


def _q6(x):
    return np.clip(np.rint(x * np.float32(64)), -32767, 32767).astype(np.int16)


def _run_raw(c, ssign, llr, vector):
    """Cold (12 iterations, no stall) then warm (100, stall 5, trend 10 / 150) on int16 state."""
    ss = np.where(ssign < 0, -32768, 0).astype(np.int16)
    p, m = _q6(llr), np.zeros(c.cols.size * c.z, np.int16)
    r1 = q16.decode_raw(c.row_ptr, c.cols, c.shifts, c.z, ss, p, m, 12, 1000, 0, 0, vector)
    s1 = (p.copy(), m.copy())
    r2 = q16.decode_raw(c.row_ptr, c.cols, c.shifts, c.z, ss, p, m, 100, 5, 10, 150, vector)
    return r1, s1, r2, (p, m)


def _phi(x):
    return -math.log(math.tanh(x / 2.0))


def test_tables_equal_their_formulas():
    w = 8.0
    for i in range(16):
        a = math.floor(4096.0 * _phi((w * i if i else 0.5) / 64.0) + 0.5)
        b = math.floor(4096.0 * _phi(w * (i + 1) / 64.0) + 0.5)
        assert q16.TAB[i] == a and q16.TAS[i] == math.floor((a - b) / w + 0.5), i
        assert q16.TH[i] == math.floor(8192.0 * _phi(max(i, 2)) + 0.5), i
        assert q16.TL[i] == math.floor(32768.0 * math.exp(-i / 16.0) + 0.5), i
    assert q16.TINV.size == q16.NT == 10241
    y = (4.0 * np.arange(q16.NT) + 2.0) / 4096.0
    lo = (q16.TINV.view(np.uint32) & 0xFFFF).astype(np.float64)
    hi = (q16.TINV.view(np.uint32) >> 16).astype(np.float64)
    want_lo = np.minimum(np.floor(64.0 * -np.log(np.tanh(y / 2.0)) + 0.5), 32767)
    want_hi = np.minimum(np.floor(1024.0 / np.sinh(y) + 0.5), 65535)
    assert np.array_equal(lo, want_lo) and np.array_equal(hi, want_hi)
    for row, t in enumerate((q16.TAB, q16.TAS, q16.TH, q16.TL)):
        assert np.array_equal(q16.PLANES[2 * row], np.tile(t & 0xFF, 2))
        assert np.array_equal(q16.PLANES[2 * row + 1], np.tile(t >> 8, 2))


def test_phi_accuracy():
    # the piecewise phi within its documented error: relative < 0.65 % on [0.5, 4), < 2.5 % on
    # [0.125, 0.5), absolute < 3e-4 from 4 up (the Q12 rounding)
    for x in range(8, q16.XMAX):
        got = q16._phi_ref(x, q16.TAB, q16.TAS, q16.TH, q16.TL) / 4096.0
        want = _phi(x / 64.0)
        if x < 256:
            assert abs(got / want - 1.0) < (0.0065 if x >= 32 else 0.025), (x, got, want)
        else:
            assert abs(got - want) < 3e-4, (x, got, want)
    # clamped at XMAX - 1, -32768 read as 32768
    top = q16._phi_ref(q16.XMAX - 1, q16.TAB, q16.TAS, q16.TH, q16.TL)
    assert q16._phi_ref(32768, q16.TAB, q16.TAS, q16.TH, q16.TL) == top


@avx2
@pytest.mark.parametrize("qber", [0.02, 0.05, 0.08])
@pytest.mark.parametrize("k", [3000, 5000, 10000])      # Z = 16, 32, 64
def test_vector_equals_scalar_reference(qber, k):
    seed = 11 + int(qber * 100) + k
    c, ssign, llr = _frame(qber, seed, k)
    assert c.z % 16 == 0
    ref = _run_raw(c, ssign, llr, False)
    vec = _run_raw(c, ssign, llr, True)
    assert ref[0] == vec[0] and ref[2] == vec[2], f"seed {seed}: {ref[0]} {ref[2]} / {vec[0]} {vec[2]}"
    for a, b in ((ref[1], vec[1]), (ref[3], vec[3])):
        assert np.array_equal(a[0], b[0]), f"seed {seed}: posteriors differ"
        assert np.array_equal(a[1], b[1]), f"seed {seed}: messages differ"


@avx2
def test_vector_equals_scalar_reference_large_frame():
    seed = 5
    c, ssign, llr = _frame(0.05, seed, 100_000)
    ref = _run_raw(c, ssign, llr, False)
    vec = _run_raw(c, ssign, llr, True)
    assert ref[0] == vec[0] and ref[2] == vec[2], f"seed {seed}"
    assert ref[2][1], f"seed {seed}: the 10^5-bit frame at 5 % did not converge"
    for a, b in ((ref[1], vec[1]), (ref[3], vec[3])):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]), f"seed {seed}"


@avx2
def test_float_entry_point_is_the_raw_kernel():
    seed = 23
    c, ssign, llr = _frame(0.05, seed, 10000)
    r1, s1, r2, s2 = _run_raw(c, ssign, llr, True)
    post, msg = llr.copy(), np.zeros(c.cols.size * c.z, np.float32)
    w1 = q16.decode(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, 12, 1000)
    assert w1 == r1, f"seed {seed}"
    assert np.array_equal(post * 64, s1[0].astype(np.float32)), f"seed {seed}"
    assert np.array_equal(msg * 64, s1[1].astype(np.float32)), f"seed {seed}"
    w2 = q16.decode(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, 100, 5, 10, 150)
    assert w2 == r2, f"seed {seed}"
    assert np.array_equal(post * 64, s2[0].astype(np.float32)), f"seed {seed}"
    assert np.array_equal(msg * 64, s2[1].astype(np.float32)), f"seed {seed}"


@avx2
def test_bad_lift_raises():
    c, ssign, llr = _frame(0.05, 3, 4000)      # Z = 24
    assert c.z % 16 != 0
    post, msg = llr.copy(), np.zeros(c.cols.size * c.z, np.float32)
    with pytest.raises(ValueError, match="multiple of 16"):
        q16.decode(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, 10, 5)
    assert np.array_equal(post, llr)


def _pair(seed, n, qber):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    return a, a ^ (rng.random(n) < qber).astype(np.uint8)


@avx2
@pytest.mark.parametrize("qber", [0.02, 0.05, 0.08])
def test_reconcile_q16_corrects_keys(qber):
    seed = 31 + int(qber * 100)
    a, b = _pair(seed, 30000, qber)
    fixed, rep = reconcile(a, b, qber, method="ldpc", seed=seed, decoder="q16", frame_bits=10000,
                           rng=np.random.default_rng(seed))
    assert ldpc.plan_frame(10000, qber).z % 16 == 0
    assert rep.failed_frames == 0 and np.array_equal(fixed, a), f"seed {seed}"
    assert rep.decoding.iterations > 0


@avx2
def test_reconcile_q16_threads():
    seed = 41
    a, b = _pair(seed, 20000, 0.05)      # two frames of 10^4 bits, Z = 64
    out = [reconcile(a, b, 0.05, method="ldpc", seed=seed, decoder="q16", frame_bits=10000, threads=threads,
                     rng=np.random.default_rng(seed)) for threads in (1, 2)]
    (k1, r1), (k2, r2) = out
    assert np.array_equal(k1, a) and r1.failed_frames == 0, f"seed {seed}"
    assert np.array_equal(k1, k2) and r1 == r2, f"seed {seed}: threads=2 differs"


def test_reconcile_q16_falls_back_to_amin():
    # a 4000-bit frame has Z = 24: decoder "q16" decodes it by the amin kernel, same results
    seed = 43
    a, b = _pair(seed, 4000, 0.05)
    assert ldpc.plan_frame(4000, 0.05).z % 16 != 0
    res = [reconcile(a, b, 0.05, method="ldpc", seed=seed, decoder=d, rng=np.random.default_rng(seed))
           for d in ("q16", "amin")]
    assert np.array_equal(res[0][0], a) and res[0][1].failed_frames == 0, f"seed {seed}"
    assert np.array_equal(res[0][0], res[1][0]) and res[0][1] == res[1][1], f"seed {seed}"


def test_without_avx2_q16_refuses_and_reconcile_falls_back(monkeypatch):
    # as on a CPU without AVX2: decode refuses (before numba compiles anything), "q16" runs amin
    monkeypatch.setattr(q16, "AVX2", False)
    c, ssign, llr = _frame(0.05, 3, 10000)
    with pytest.raises(RuntimeError, match="AVX2"):
        q16.decode(c.row_ptr, c.cols, c.shifts, c.z, ssign, llr.copy(), np.zeros(c.cols.size * c.z, np.float32),
                   10, 5)
    seed = 47
    a, b = _pair(seed, 10000, 0.05)
    res = [reconcile(a, b, 0.05, method="ldpc", seed=seed, decoder=d, rng=np.random.default_rng(seed))
           for d in ("q16", "amin")]
    assert np.array_equal(res[0][0], a), f"seed {seed}"
    assert np.array_equal(res[0][0], res[1][0]) and res[0][1] == res[1][1], f"seed {seed}"


@avx2
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc for the C rig")
def test_matches_c_rig():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "ldpc_ceiling"))
    fixed = pytest.importorskip("fixed")
    seed = 7
    for qber in (0.02, 0.08):
        c, ssign, llr = _frame(qber, seed, 5000)
        ss = np.where(ssign < 0, -32768, 0).astype(np.int16)
        p, m = fixed.to_q(llr, spare=16), np.zeros(c.cols.size * c.z, np.int16)
        dec = fixed.raw(True)
        c1 = dec(c.row_ptr, c.cols, c.shifts, c.z, ss, p, m, 12, 1000)
        c2 = dec(c.row_ptr, c.cols, c.shifts, c.z, ss, p, m, 100, 5, 10, 150)
        r1, _, r2, (pq, mq) = _run_raw(c, ssign, llr, True)
        assert (r1, r2) == (c1, c2), f"qber {qber} seed {seed}"
        assert np.array_equal(pq, p[:llr.size]) and np.array_equal(mq, m), f"qber {qber} seed {seed}"


@avx2
def test_a_frame_q16_cannot_decode_is_retried_with_amin():
    # frame 203 of `bench reconcile --method ldpc --qber 0.05 --bits 100000 --seed 4` (4916
    # errors, fewer than the mean): "amin" decodes it at the first attempt, the fixed-point
    # decoder alone failed all 31 attempts (its own error floor); "q16" now retries a frame with
    # the amin kernel after Q16_ATTEMPTS = 2 failed attempts, and it decodes at the third
    from bench.reconcile import WARM_BITS, draw, frame_seed

    seed, frame, qber = 4, 203, 0.05
    rng = np.random.default_rng(seed)
    draw(rng, WARM_BITS, qber)
    for _ in range(frame + 1):
        a, b = draw(rng, 100_000, qber)

    def run(decoder):
        return reconcile(a, b, qber, method="ldpc", seed=frame_seed(seed, frame), decoder=decoder,
                         rng=np.random.default_rng([seed, frame]))
    (k_amin, r_amin), (k_q16, r_q16) = run("amin"), run("q16")
    assert int((a != b).sum()) == 4916, "the frame draw changed"
    assert np.array_equal(k_amin, a) and r_amin.rounds == 1, f"seed {seed} frame {frame}"
    assert np.array_equal(k_q16, a) and r_q16.failed_frames == 0, f"seed {seed} frame {frame}"
    assert ldpc.Q16_ATTEMPTS == 2
    assert r_q16.rounds == 3, f"seed {seed} frame {frame}: a q16 attempt decoded after all?"
