"""Verification tags and Toeplitz privacy amplification against direct computations."""

import numpy as np
import pytest

from controller.postprocess.amplify import (amplify, modified_toeplitz_hash, seed_bits_needed,
                                           toeplitz_hash, toeplitz_hash_naive)
from controller.postprocess.channel import LocalChannel
from controller.postprocess.verify import P61, points_needed, tag, verify

SEED = 424242


def _naive_tag(bits, r):
    # Direct big-integer evaluation of the same polynomial (Horner, 32-bit little-endian words).
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    packed = np.concatenate([packed, np.zeros((-packed.size) % 4, dtype=np.uint8)])
    h = 0
    for w in packed.view("<u4").tolist():
        h = (h * r + w) % P61
    return (h * r + len(bits)) % P61


def test_tag_matches_big_integer_evaluation():
    rng = np.random.default_rng(SEED)
    for n in (1, 31, 32, 33, 1000, 4099):
        bits = rng.integers(0, 2, n, dtype=np.uint8)
        pts = rng.integers(0, P61, size=3, dtype=np.uint64)
        assert tag(bits, pts).tolist() == [_naive_tag(bits, int(r)) for r in pts], f"n {n} seed {SEED}"
    # extreme point values exercise the modular reduction
    bits = np.ones(640, dtype=np.uint8)
    pts = np.array([P61 - 1, 1 << 60, 2], dtype=np.uint64)
    assert tag(bits, pts).tolist() == [_naive_tag(bits, int(r)) for r in pts]


def test_points_needed_meets_eps_cor():
    t = points_needed(10**6, 1e-15)
    words = 10**6 // 32 + 2
    assert (words / P61) ** t <= 1e-15
    assert (words / P61) ** (t - 1) > 1e-15 or t == 1


def test_verify_accepts_equal_and_rejects_different_keys():
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2, 100_000, dtype=np.uint8)
    ch = LocalChannel()
    res = verify(a, a.copy(), ch, rng, eps_cor=1e-15)
    assert res.ok and res.tag_bits == 61 * points_needed(a.size, 1e-15)
    assert ch.stats.leaked_bits == res.tag_bits
    b = a.copy()
    b[12345] ^= 1
    assert not verify(a, b, LocalChannel(), rng).ok
    c = a.copy()
    c[[7, 8]] ^= 1          # an even number of flips must be caught too
    assert not verify(a, c, LocalChannel(), rng).ok


@pytest.mark.parametrize("n,m", [(1, 1), (2, 1), (17, 5), (256, 256), (1000, 333), (2048, 1024)])
def test_toeplitz_fft_equals_matrix_product(n, m):
    rng = np.random.default_rng(SEED + n)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    want = toeplitz_hash_naive(s, x, m)
    assert np.array_equal(toeplitz_hash(s, x, m), want), f"seed {SEED + n}"
    # the column-split path gives the same answer
    assert np.array_equal(toeplitz_hash(s, x, m, chunk_bits=7), want)


def test_toeplitz_is_linear_and_checks_sizes():
    rng = np.random.default_rng(SEED)
    n, m = 5000, 2000
    s = rng.integers(0, 2, n + m - 1, dtype=np.uint8)
    x1, x2 = rng.integers(0, 2, (2, n), dtype=np.uint8)
    assert np.array_equal(toeplitz_hash(s, x1 ^ x2, m), toeplitz_hash(s, x1, m) ^ toeplitz_hash(s, x2, m))
    with pytest.raises(ValueError, match="n \\+ m - 1"):
        toeplitz_hash(s[:-1], x1, m)
    with pytest.raises(ValueError, match="output length"):
        modified_toeplitz_hash(s[:n - 1], x1, n + 1)


def test_amplify_gives_both_sides_the_same_balanced_key():
    rng = np.random.default_rng(SEED)
    key = rng.integers(0, 2, 200_000, dtype=np.uint8)
    ch = LocalChannel()
    ka, kb = amplify(key, key.copy(), 80_000, ch, rng)
    assert ka.size == 80_000 and np.array_equal(ka, kb)
    assert abs(ka.mean() - 0.5) < 0.01
    assert ch.stats.leaked_bits == 0 and ch.stats.bits == seed_bits_needed(200_000, 80_000)


@pytest.mark.parametrize("n,m", [(2, 1), (50, 20), (3001, 1500), (4096, 4095)])
def test_modified_toeplitz_equals_identity_plus_matrix_product(n, m):
    rng = np.random.default_rng(SEED + m)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, n - 1, dtype=np.uint8)
    want = x[:m] ^ toeplitz_hash_naive(s, x[m:], m)
    assert np.array_equal(modified_toeplitz_hash(s, x, m), want), f"seed {SEED + m}"
    assert np.array_equal(modified_toeplitz_hash(s, x, n), x)
    with pytest.raises(ValueError, match="n - 1"):
        modified_toeplitz_hash(s[:-1], x, m)
