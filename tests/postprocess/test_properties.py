"""Property tests (hypothesis): Cascade only ever corrects, Toeplitz matches the matrix."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.postprocess.amplify import modified_toeplitz_hash, toeplitz_hash_naive
from controller.postprocess.channel import LocalChannel
from controller.postprocess.reconcile import reconcile


@settings(max_examples=60, deadline=None)
@given(n=st.integers(2, 400), qber=st.floats(0.005, 0.3), seed=st.integers(0, 2**32 - 1),
       mode=st.sampled_from(["standard", "low-round"]), data=st.data())
def test_cascade_never_adds_errors(n, qber, seed, mode, data):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    # any error pattern, not only i.i.d. ones: hypothesis picks the flipped positions
    flips = data.draw(st.lists(st.integers(0, n - 1), max_size=n, unique=True))
    b = a.copy()
    b[flips] ^= 1
    ch = LocalChannel()
    fixed, rep = reconcile(a, b, qber, channel=ch, seed=seed, mode=mode)
    assert np.count_nonzero(fixed != a) <= len(flips)
    assert rep.leaked_bits == ch.stats.leaked_bits
    assert ch.pending("alice") == 0 and ch.pending("bob") == 0
    if len(flips) <= 1:
        assert np.array_equal(fixed, a)     # one error is always found by the first pass


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data(), seed=st.integers(0, 2**32 - 1))
def test_modified_toeplitz_matches_matrix(n, data, seed):
    m = data.draw(st.integers(0, n))
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, max(n - 1, 0), dtype=np.uint8)
    got = modified_toeplitz_hash(s, x, m)
    if 0 < m < n:
        want = x[:m] ^ toeplitz_hash_naive(s, x[m:], m)
    else:
        want = x[:m]
    assert np.array_equal(got, want)
