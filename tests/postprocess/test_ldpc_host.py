"""LDPC host-side helpers (``_ldpc_host``): each against the plain numpy formulation it replaced."""

import math

import numpy as np
import pytest

from controller.postprocess import _ldpc_core as core
from controller.postprocess import _ldpc_host as host
from controller.postprocess import ldpc

from .test_ldpc import _pair, recorded

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
    rng = np.random.default_rng(seed)          # scratch and outputs hold garbage before
    is_key, is_rest = rng.random(plan.n) < 0.5, rng.random(plan.m) < 0.5
    key_pos = rng.integers(-9, 9, plan.k + 1)
    rest = rng.integers(-9, 9, plan.m - 2 * plan.p + 1)
    pair_a, pair_b = host.split(plan.z, plan.kb, lay.punct, lay.short, is_key, is_rest, key_pos, rest)
    got = key_pos[:plan.k], pair_a, pair_b, rest[:-1]
    for name, w, g in zip(("key_pos", "pair_a", "pair_b", "rest"), want, got):
        assert g.dtype == np.int64 and np.array_equal(g, w), f"{name} differs (seed {seed})"
    for name, w, g in zip(("key_pos", "pair_a", "pair_b", "rest"), want,
                          (lay.key_pos, lay.pair_a, lay.pair_b, lay.rest)):
        assert np.array_equal(g, w), f"layout {name} differs (seed {seed})"


def test_layout_split_refuses_overlapping_variables():
    plan = ldpc.plan_frame(20_000, 0.05)
    lay = ldpc.layout(plan, 1)
    short = np.sort(np.append(lay.short[1:], lay.punct[0]))       # a punctured one also shortened
    with pytest.raises(ValueError, match="overlap"):
        host.split(plan.z, plan.kb, lay.punct, short, np.empty(plan.n, bool), np.empty(plan.m, bool),
                   np.empty(plan.k + 1, np.int64), np.empty(plan.m - 2 * plan.p + 1, np.int64))


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
        sign = np.full(plan.m, np.nan, dtype=np.float32)        # the fill must not depend on
        llr = np.full(plan.n, np.nan, dtype=np.float32)         # what the buffers held
        host.bob_frame(lay.key_pos, lay.short, lay.rest, lay.pair_a, lay.pair_b, b, lk, pd, l0,
                       core.LLR_KNOWN, sign, llr)
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


class _Poisoned(ldpc._Buffers):
    """A pool whose arrays hold garbage when taken (as reused buffers may)."""

    def take(self, sizes):
        out = super().take(sizes)
        for a in out:
            a[...] = np.nan if a.dtype.kind == "f" else (a.dtype.kind == "b" or -7)
        return out


def test_pooled_layout_is_the_fresh_layout():
    plan = ldpc.plan_frame(100_000, 0.02)
    pool, held = _Poisoned(), []
    for seed in (1, 2):
        fresh, pooled = ldpc.layout(plan, seed), ldpc.layout(plan, seed, pool, held)
        for name in ("punct", "pair_a", "pair_b", "short", "key_pos", "rest"):
            assert np.array_equal(getattr(fresh, name), getattr(pooled, name)), f"{name}, seed {seed}"
        assert np.array_equal(fresh.reveal_key, pooled.reveal_key)
        pool.give(held)
        held.clear()
    assert pool.free, "nothing was kept for reuse"


def _run(a, b, qber, seed):
    return recorded(a, b, qber, seed, f_start=1.03)


@pytest.mark.parametrize("qber,seed", [(0.02, 21), (0.08, 22)])
def test_reused_buffers_give_the_fresh_results(monkeypatch, qber, seed):
    a, b = _pair(seed, 50_000, qber)
    monkeypatch.setattr(ldpc, "POOL_BYTES", 0)              # nothing kept: fresh arrays only
    monkeypatch.setattr(ldpc, "_BUFFERS", ldpc._Buffers())
    want = _run(a, b, qber, seed)
    assert not ldpc._BUFFERS.free
    monkeypatch.setattr(ldpc, "POOL_BYTES", 1 << 30)
    monkeypatch.setattr(ldpc, "_BUFFERS", _Poisoned())
    for _ in range(2):                                       # fresh then reused, both poisoned
        fixed, rep, log = _run(a, b, qber, seed)
        assert np.array_equal(fixed, want[0]), f"seed {seed}"
        assert rep == want[1] and log == want[2], f"seed {seed}"
    assert ldpc._BUFFERS.free
    assert rep.rounds > 1, "no retry: the warm state was not exercised"


def test_the_pool_keeps_no_key_derived_values(monkeypatch):
    # Bob's priors, posteriors and messages come from his key: what the pool keeps for the
    # next call must be zeros, not the last frame's state
    a, b = _pair(23, 50_000, 0.05)
    monkeypatch.setattr(ldpc, "_BUFFERS", ldpc._Buffers())
    fixed, rep, _ = _run(a, b, 0.05, 23)
    assert np.array_equal(fixed, a), "seed 23"
    kept = [x for v in ldpc._BUFFERS.free.values() for x in v]
    assert any(x.dtype == np.float32 and x.size >= 50_000 for x in kept), "no decoder state was kept"
    assert all(not x.any() for x in kept), "a pooled array still holds values of the last call"
