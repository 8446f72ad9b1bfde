"""Multiply-add-shift privacy amplification: direct computation, exhaustive universality, errors."""

import itertools

import numpy as np
import pytest

from controller.postprocess.amplify import (amplify, draw_seed, hash_key, multiply_shift_hash,
                                           multiply_shift_hash_naive, multiply_shift_seed_bits,
                                           seed_bits_needed)
from controller.postprocess.channel import LocalChannel

SEED = 20261127


def _mas(a, b, x, width, l):
    return ((a * x + b) % (1 << width)) >> (width - l)


@pytest.mark.parametrize("w,l,width", [(1, 1, 1), (2, 2, 3), (3, 2, 4), (2, 3, 4), (3, 3, 5), (3, 2, 5)])
def test_multiply_add_shift_is_strongly_universal_exhaustively(w, l, width):
    # For all x != y and all (u, v): #{(a, b) : h(x) = u, h(y) = v} = 2^(2W) / 2^(2l) exactly.
    want = (1 << (2 * width)) >> (2 * l)
    for x, y in itertools.permutations(range(1 << w), 2):
        counts = np.zeros((1 << l, 1 << l), dtype=np.int64)
        for a in range(1 << width):
            for b in range(1 << width):
                counts[_mas(a, b, x, width, l), _mas(a, b, y, width, l)] += 1
        assert (counts == want).all(), f"w {w} l {l} W {width} x {x} y {y}\n{counts}"


def test_strong_universality_check_fails_below_the_width_bound():
    # W = w + l - 2 violates W >= w + l - 1; the exhaustive count must then find a non-uniform pair.
    w, l, width = 3, 2, 3
    found = False
    for x, y in itertools.permutations(range(1 << w), 2):
        counts = np.zeros((1 << l, 1 << l), dtype=np.int64)
        for a in range(1 << width):
            for b in range(1 << width):
                counts[_mas(a, b, x, width, l), _mas(a, b, y, width, l)] += 1
        found |= bool((counts != (1 << (2 * width)) >> (2 * l)).any())
    assert found


@pytest.mark.parametrize("n,m", [(2, 1), (3, 1), (3, 2), (4, 2), (5, 2), (5, 3), (6, 2)])
def test_shipped_family_is_2_universal_exhaustively(n, m):
    # Over all seeds, keys x != y collide for exactly 2^(seed bits - m) seeds (none if they
    # differ only in the first m bits): collision probability 2^-m, as the leftover hash lemma needs.
    s_bits = multiply_shift_seed_bits(n, m)
    keys = np.array(list(itertools.product((0, 1), repeat=n)), dtype=np.uint8)
    seeds = np.array(list(itertools.product((0, 1), repeat=s_bits)), dtype=np.uint8)
    out = np.array([[int("".join(map(str, multiply_shift_hash(s, k, m))), 2) for k in keys] for s in seeds])
    for i, j in itertools.combinations(range(len(keys)), 2):
        collisions = int((out[:, i] == out[:, j]).sum())
        want = 0 if np.array_equal(keys[i, m:], keys[j, m:]) else len(seeds) >> m
        assert collisions == want, f"n {n} m {m} keys {keys[i]} {keys[j]}"


@pytest.mark.parametrize("n,m", [(2, 1), (9, 4), (64, 63), (65, 1), (1000, 333), (4096, 2048),
                                 (100_003, 40_001)])
def test_multiply_shift_equals_direct_integer_computation(n, m):
    rng = np.random.default_rng(SEED + n)
    x = rng.integers(0, 2, n, dtype=np.uint8)
    s = rng.integers(0, 2, multiply_shift_seed_bits(n, m), dtype=np.uint8)
    assert np.array_equal(multiply_shift_hash(s, x, m), multiply_shift_hash_naive(s, x, m)), f"seed {SEED + n}"
    # bool arrays (as they come off the channel) give the same answer
    assert np.array_equal(multiply_shift_hash(s.astype(bool), x.astype(bool), m), multiply_shift_hash(s, x, m))


def test_multiply_shift_hand_example():
    # n = 6, m = 2: W = 5, a = 0b10110 = 22, b = 0b01 = 1 (3 bits: 1, 0, 0), x1 = 0b10 = 2, x2 = 0b1011 = 11.
    # (22 * 11 + 1) mod 32 = 243 mod 32 = 19 = 0b10011; >> 3 -> 2; (2 + 2) mod 4 = 0.
    a_bits, b_bits = [0, 1, 1, 0, 1], [1, 0, 0]
    x = np.array([0, 1] + [1, 1, 0, 1], dtype=np.uint8)
    got = multiply_shift_hash(np.array(a_bits + b_bits, dtype=np.uint8), x, 2)
    assert got.tolist() == [0, 0]
    x[0] = 1                      # x1 = 3 -> (2 + 3) mod 4 = 1
    assert multiply_shift_hash(np.array(a_bits + b_bits, dtype=np.uint8), x, 2).tolist() == [1, 0]


def test_trivial_lengths_and_bad_input():
    rng = np.random.default_rng(SEED)
    x = rng.integers(0, 2, 100, dtype=np.uint8)
    assert seed_bits_needed(100, 0) == seed_bits_needed(100, 100) == 0
    assert seed_bits_needed(100, 40) == 2 * 100 - 40 - 2
    assert seed_bits_needed(100, 40, method="toeplitz") == 99
    assert multiply_shift_hash(np.zeros(0, np.uint8), x, 0).size == 0
    assert np.array_equal(multiply_shift_hash(np.zeros(0, np.uint8), x, 100), x)
    s = rng.integers(0, 2, seed_bits_needed(100, 40), dtype=np.uint8)
    with pytest.raises(ValueError, match="2n - m - 2"):
        multiply_shift_hash(s[:-1], x, 40)
    with pytest.raises(ValueError, match="output length"):
        multiply_shift_hash(s, x, 101)
    with pytest.raises(ValueError, match="output length"):
        multiply_shift_hash(s, x, -1)
    with pytest.raises(ValueError, match="only 0 and 1"):
        multiply_shift_hash(s, x * 2, 40)
    with pytest.raises(ValueError, match="1-D"):
        multiply_shift_hash(s, x.reshape(10, 10), 40)
    with pytest.raises(ValueError, match="dtype"):
        multiply_shift_hash(s, x.astype(float), 40)
    with pytest.raises(ValueError, match="unknown amplification method"):
        hash_key(s, x, 40, method="sha256")


@pytest.mark.parametrize("method", ["multiply_shift", "toeplitz"])
def test_amplify_gives_both_sides_the_same_key_and_meters_the_seed(method):
    rng = np.random.default_rng(SEED)
    key = rng.integers(0, 2, 200_000, dtype=np.uint8)
    ch = LocalChannel()
    ka, kb = amplify(key, key.copy(), 80_000, ch, rng, method=method)
    assert ka.size == 80_000 and np.array_equal(ka, kb), f"seed {SEED}"
    assert abs(ka.mean() - 0.5) < 0.01
    assert ch.stats.leaked_bits == 0 and ch.stats.bits == seed_bits_needed(200_000, 80_000, method)
    # a single flipped key bit changes about half of the output
    other = key.copy()
    other[123_456] ^= 1
    kc, _ = amplify(other, other, 80_000, LocalChannel(), np.random.default_rng(SEED), method=method)
    ka2, _ = amplify(key, key, 80_000, LocalChannel(), np.random.default_rng(SEED), method=method)
    assert 0.45 < float((kc != ka2).mean()) < 0.55


@pytest.mark.parametrize("method", ["multiply_shift", "toeplitz"])
def test_draw_seed_has_the_needed_length_and_is_balanced(method):
    rng = np.random.default_rng(SEED)
    for n, m in ((100_001, 40_000), (9, 4), (10, 10), (10, 0)):
        seed = draw_seed(rng, n, m, method)
        assert seed.dtype == np.uint8 and seed.size == seed_bits_needed(n, m, method), f"seed {SEED}"
        assert set(np.unique(seed).tolist()) <= {0, 1}
    assert abs(draw_seed(rng, 100_001, 40_000, method).mean() - 0.5) < 0.01, f"seed {SEED}"
