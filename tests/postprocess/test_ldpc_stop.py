"""When an LDPC decoding attempt gives up: the trend of its unmet checks (``decode``'s window and horizon)."""

import math

import numpy as np
import pytest

from controller.postprocess import _ldpc_core as core
from controller.postprocess import _qc
from controller.postprocess import ldpc
from controller.postprocess.reconcile import reconcile

from .test_ldpc import _pair


def _frame(seed, qber):
    # a rate-0.8 code of 12 800 bits, Bob's priors and the syndrome signs of Alice's word
    code = _qc.build(160, 40, 64, seed)
    a, b = _pair(seed, code.n, qber)
    ssign = np.where(ldpc.syndrome(code, a) == 0, 1.0, -1.0).astype(np.float32)
    l0 = math.log((1 - qber) / qber)
    post = np.where(b == 0, l0, -l0).astype(np.float32)
    return code, a, ssign, post


def _unmet_counts(code, ssign, post, msg, iterations):
    """Run ``iterations`` iterations of the approximate update row by row through the
    decoder's own layer function; return the per-iteration counts of unmet checks."""
    dmax = int(np.diff(code.row_ptr).max())
    ebuf = np.empty(dmax * code.z, dtype=np.float32)
    st = np.empty((code.z // core._W, core._ROWS, core._W), dtype=np.float32)
    counts = []
    for _ in range(iterations):
        counts.append(sum(int(core._layer_am(code.row_ptr, code.cols, code.shifts, r, ssign, post, msg,
                                             ebuf, st)) for r in range(code.mb)))
    return counts


def _trend_stop(counts, window, horizon):
    """The iteration at which the trend test first holds (None: never), from the counts."""
    low = []
    for i, u in enumerate(counts, 1):
        low.append(min(u, low[-1]) if low else u)
        b = low[-1]
        if i > window and b > 0 and b * (b / low[i - 1 - window]) ** (horizon / window) >= 1.0:
            return i
    return None


@pytest.mark.parametrize("qber,seed,window,horizon",
                         [(0.028, 22, 10, 150), (0.028, 23, 10, 150), (0.029, 21, 10, 150), (0.028, 23, 4, 40)])
def test_an_attempt_gives_up_where_the_trend_of_its_unmet_checks_says(qber, seed, window, horizon):
    # 2.8-2.9 % errors on a rate-0.8 code (f ~1.06 for 1 - R = 0.2): these frames' unmet checks fall,
    # then level off above zero; the stall rule is kept out of the way (stall 1000)
    code, _, ssign, post = _frame(seed, qber)
    msg = np.zeros(code.cols.size * code.z, dtype=np.float32)
    ref_post, ref_msg = post.copy(), msg.copy()
    counts = _unmet_counts(code, ssign, ref_post, ref_msg, 60)
    want = _trend_stop(counts, window, horizon)
    assert want is not None and window + 1 < want < 60 and 0 not in counts[:want], \
        f"seed {seed}: counts {counts}"
    it, ok = core.decode(code.row_ptr, code.cols, code.shifts, code.z, ssign, post, msg, 60, 1000, True,
                         window, horizon)
    assert (it, ok) == (want, False), f"seed {seed}: counts {counts}"
    # and the state is that of ``want`` iterations
    ref_post, ref_msg = _frame(seed, qber)[3], np.zeros_like(msg)
    _unmet_counts(code, ssign, ref_post, ref_msg, want)
    assert np.array_equal(post, ref_post) and np.array_equal(msg, ref_msg), f"seed {seed}"


@pytest.mark.parametrize("seed", [21, 22])
def test_without_a_window_the_trend_is_not_tested(seed):
    code, _, ssign, post = _frame(seed, 0.04)
    msg = np.zeros(code.cols.size * code.z, dtype=np.float32)
    it, ok = core.decode(code.row_ptr, code.cols, code.shifts, code.z, ssign, post, msg, 40, 1000, True, 0, 150)
    assert (it, ok) == (40, False), f"seed {seed}"


@pytest.mark.parametrize("seed", [12, 13])
def test_a_steadily_converging_attempt_is_not_stopped_by_the_default_trend(seed):
    # 2.6 % errors (f 1.15 for this code): 15-17 iterations, more than the window
    code, a, ssign, post = _frame(seed, 0.026)
    msg = np.zeros(code.cols.size * code.z, dtype=np.float32)
    off_post, off_msg = post.copy(), msg.copy()
    args = (code.row_ptr, code.cols, code.shifts, code.z, ssign)
    it, ok = core.decode(*args, post, msg, 100, 5, True, ldpc.TREND_WINDOW, ldpc.TREND_HORIZON)
    it_off, ok_off = core.decode(*args, off_post, off_msg, 100, 5, True)
    assert ok and ok_off and it == it_off > ldpc.TREND_WINDOW, f"seed {seed}: {it} / {it_off} iterations"
    assert np.array_equal((post < 0).astype(np.uint8), a), f"seed {seed}"
    assert np.array_equal(post, off_post), f"seed {seed}"


def test_trend_options_are_checked():
    a, b = _pair(1, 1000, 0.05)
    for window, horizon in ((-1, 150), (10, 0), (10, -5)):
        with pytest.raises(ValueError, match="window"):
            reconcile(a, b, 0.05, "ldpc", window=window, horizon=horizon)
    fixed, rep = reconcile(a, b, 0.05, "ldpc", window=0, horizon=0, seed=1, rng=np.random.default_rng(1))
    assert np.array_equal(fixed, a) and rep.failed_frames == 0
