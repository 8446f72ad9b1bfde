"""LDPC host-side helpers (``_ldpc_host``): each against the plain numpy formulation it replaced."""

import math

import numpy as np
import pytest

from controller.postprocess import _ldpc_core as core
from controller.postprocess import _ldpc_host as host
from controller.postprocess import ldpc

CASES = [(100_000, 0.02, 11), (100_000, 0.08, 12), (20_000, 0.05, 13), (1000, 0.11, 14)]


def _numpy_layout(plan, punct, short):
    pair_a = (punct // plan.z - plan.kb) * plan.z + punct % plan.z
    pair_b = pair_a + plan.z
    is_key = np.ones(plan.n, dtype=bool)
    is_key[punct] = False
    is_key[short] = False
    rest = np.ones(plan.m, dtype=bool)
    rest[pair_a] = False
    rest[pair_b] = False
    return np.flatnonzero(is_key), pair_a, pair_b, np.flatnonzero(rest)


@pytest.mark.parametrize("k,qber,seed", CASES)
def test_layout_split_matches_numpy(k, qber, seed):
    plan = ldpc.plan_frame(k, qber)
    lay = ldpc.layout(plan, seed)
    want = _numpy_layout(plan, lay.punct, lay.short)
    got = host.split(plan.n, plan.m, plan.z, plan.kb, lay.punct, lay.short)
    for name, w, g in zip(("key_pos", "pair_a", "pair_b", "rest"), want, got):
        assert g.dtype == np.int64 and np.array_equal(g, w), f"{name} differs (seed {seed})"
    assert np.array_equal(lay.key_pos, want[0]) and np.array_equal(lay.rest, want[3])


@pytest.mark.parametrize("k,qber,seed", CASES)
def test_alice_word_and_parts_match_numpy(k, qber, seed):
    plan = ldpc.plan_frame(k, qber)
    lay = ldpc.layout(plan, seed)
    rng = np.random.default_rng(seed)
    key = rng.integers(0, 2, k, dtype=np.uint8)
    secret = rng.integers(0, 2, plan.p, dtype=np.uint8)
    word = np.zeros(plan.n, dtype=np.uint8)
    word[lay.key_pos] = key
    word[lay.punct] = secret
    got = host.word(plan.n, lay.key_pos, key, lay.punct, secret)
    assert got.dtype == np.uint8 and np.array_equal(got, word), f"seed {seed}"
    s = ldpc.syndrome(ldpc.code(plan), word)
    leaky, pads = host.alice_parts(s, lay.rest, lay.pair_a, lay.pair_b)
    want = np.concatenate([s[lay.rest], s[lay.pair_a] ^ s[lay.pair_b]]).astype(bool)
    assert leaky.dtype == np.bool_ and np.array_equal(leaky, want), f"seed {seed}"
    assert np.array_equal(pads, s[lay.pair_a].astype(bool)), f"seed {seed}"


@pytest.mark.parametrize("k,qber,seed", CASES)
def test_bob_frame_matches_numpy(k, qber, seed):
    plan = ldpc.plan_frame(k, qber)
    lay = ldpc.layout(plan, seed)
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2, k, dtype=np.uint8)
    bits[rng.integers(0, k, 5)] = rng.integers(2, 256, 5)      # any non-zero counts as 1
    leaky = rng.integers(0, 2, plan.m - plan.p, dtype=np.uint8)
    pads = rng.integers(0, 2, plan.p, dtype=np.uint8)
    l0 = np.float32(math.log((1 - qber) / qber))
    s = np.empty(plan.m, dtype=np.uint8)
    nr = lay.rest.size
    s[lay.rest] = leaky[:nr]
    s[lay.pair_a] = pads
    s[lay.pair_b] = leaky[nr:] ^ pads
    want_sign = np.where(s == 0, 1.0, -1.0).astype(np.float32)
    want_llr = np.zeros(plan.n, dtype=np.float32)
    want_llr[lay.key_pos] = np.where(bits == 0, l0, -l0)
    want_llr[lay.short] = core.LLR_KNOWN
    for b, lk, pd in ((bits, leaky, pads), (bits != 0, leaky.astype(bool), pads.astype(bool))):
        sign, llr = host.bob_frame(plan.n, plan.m, lay.key_pos, lay.short, lay.rest, lay.pair_a,
                                   lay.pair_b, b, lk, pd, l0, core.LLR_KNOWN)
        assert sign.dtype == np.float32 and np.array_equal(sign, want_sign), f"seed {seed}"
        assert llr.dtype == np.float32 and np.array_equal(llr, want_llr), f"seed {seed}"


def test_hard_decisions_match_numpy():
    rng = np.random.default_rng(5)
    post = rng.normal(size=10_000).astype(np.float32)
    post[:10] = 0.0
    post[10:20] = -0.0
    key_pos = np.sort(rng.choice(post.size, 9000, replace=False))
    key_pos[:20] = np.arange(20)
    got = host.hard(post, key_pos)
    assert got.dtype == np.uint8 and np.array_equal(got, (post[key_pos] < 0).astype(np.uint8))
