"""Cascade reconciliation: correctness, metered leakage, modes, failure paths."""

import numpy as np
import pytest

from controller.postprocess import _cascade_core as core
from controller.postprocess.cascade import (MAX_EXTRA_CHECKS, ORDERED_BELOW, CascadeAlice, bisection_limit, block_schedule,
                                            revealed_blocks)
from controller.postprocess.channel import LocalChannel
from controller.postprocess.reconcile import reconcile


def _pair(seed, n, qber):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < qber).astype(np.uint8)
    return a, b


@pytest.mark.parametrize("qber", [0.01, 0.03, 0.08])
@pytest.mark.parametrize("mode", ["standard", "low-round"])
def test_cascade_corrects_every_error(qber, mode):
    for seed in range(3):
        a, b = _pair(seed, 20_000, qber)
        fixed, rep = reconcile(a, b, qber, seed=seed, mode=mode)
        assert np.array_equal(fixed, a), f"seed {seed} qber {qber} mode {mode}"
        assert rep.leaked_bits > 0 and rep.rounds > 0
        assert rep.decoding is None        # an LDPC figure


def test_leak_is_what_the_channel_metered():
    a, b = _pair(7, 50_000, 0.02)
    ch = LocalChannel()
    ch.send("bob", b"hello")          # earlier traffic must not be billed to reconciliation
    ch.recv("alice")
    fixed, rep = reconcile(a, b, 0.02, channel=ch, seed=7)
    assert np.array_equal(fixed, a)
    assert rep.leaked_bits == ch.stats.leaked_bits
    assert rep.wire_bits == ch.stats.bits - 40 == ch.stats.by_tag["ec"]
    # Cascade cannot beat the Shannon limit, and at 5e4 bits it is well within 1.10 of it
    assert 1.0 < rep.efficiency < 1.10, f"seed 7 efficiency {rep.efficiency}"


def test_identical_keys_leak_only_block_parities():
    a, _ = _pair(3, 10_000, 0.02)
    ch = LocalChannel()
    fixed, rep = reconcile(a, a.copy(), 0.02, channel=ch, seed=3)
    assert np.array_equal(fixed, a)
    ks = block_schedule(a.size, 0.02)
    # pass 2's last block parity follows from the key's parity (pass 1): never disclosed
    assert rep.leaked_bits == sum(revealed_blocks(a.size, k) for k in ks) - 1


def test_last_block_parity_is_derived_not_disclosed():
    # passes after the first that are cut into blocks send every parity but the last one;
    # BICONF checks (one subset parity) and a first pass that is a check derive nothing
    rng = np.random.default_rng(8)
    a = rng.integers(0, 2, 1000, dtype=np.uint8)
    _, tops = CascadeAlice(a, [16, 100, 500], seed=1).opening()
    assert tops.size == 63 + (10 - 1) + 1
    _, tops = CascadeAlice(a, [500, 100], seed=1).opening()
    assert tops.size == 1 + 10
    for seed in range(5):
        x, y = _pair(40 + seed, 3000, 0.05)
        for ks in ([16, 100, 500], [500, 100, 500], [20, 7, 64, 1500]):
            fixed, _ = reconcile(x, y, 0.05, seed=seed, schedule=ks)
            assert np.array_equal(fixed, x), f"seed {40 + seed} schedule {ks}"


def test_schedule_depends_on_frame_length():
    # short frames: k1 = 2^floor(log2 1/Q), k2 = 8 k1, ordered bisection of later passes;
    # k1 = 2^ceil, k2 = 2 k1 where that k1 is >= 64 and k1 Q <= SHORT_KQ (1 % and 2 %)
    assert block_schedule(10_000, 0.02) == [64, 128] + [5000] * 18
    assert block_schedule(10_000, 0.01)[:2] == [128, 256]
    assert block_schedule(10_000, 0.015)[:2] == [64, 512]          # 128 Q = 1.92
    assert block_schedule(10_000, 0.05)[:2] == [16, 128]           # 2^ceil = 32 < 64
    assert block_schedule(100_000, 0.08) == [8, 64] + [50_000] * 18
    assert bisection_limit(10_000, [256]) == 1              # 40 blocks: one at a time
    assert bisection_limit(100_000, [64]) == 1563 >> 6
    # long frames: k1 = 2^round(log2 1/Q), k2 = 2^ceil((log2(1/Q) + 12) / 2), all at once
    assert block_schedule(1_000_000, 0.02) == [64, 512] + [500_000] * 18
    assert block_schedule(ORDERED_BELOW, 0.01) == [128, 1024] + [ORDERED_BELOW // 2] * 18
    assert bisection_limit(ORDERED_BELOW, [1024]) == 0
    # low-round: k2 the power of two nearest 1 / (errors per bit left after pass 1): 4 k1 at
    # 1, 2, 4, 8 %, 2 k1 at 5-6 % (k1 Q 0.8-0.96); a third pass of 64 k1 before the checks
    assert block_schedule(10_000, 0.02, mode="low-round") == [32, 128, 2048] + [5000] * 18
    assert block_schedule(10**6, 0.01, mode="low-round")[:3] == [64, 256, 4096]
    assert block_schedule(10**6, 0.04, mode="low-round")[:3] == [16, 64, 1024]
    assert block_schedule(10**6, 0.05, mode="low-round")[:3] == [16, 32, 1024]
    assert block_schedule(10**5, 0.06, mode="low-round")[:3] == [16, 32, 1024]
    assert block_schedule(10**4, 0.08, mode="low-round")[:3] == [8, 32, 512]
    # short frames bisect a quarter of pass 2's blocks at a time, long ones a half; an eighth
    # (a quarter) when Bob expects fewer than SPARSE_PASS2 errors in a block of pass 2
    assert bisection_limit(10_000, [128], "low-round") == 79 >> 2
    assert bisection_limit(10_000, [32], "low-round", per_block=1.05) == 313 >> 2
    assert bisection_limit(10_000, [32], "low-round", per_block=0.8) == 313 >> 3
    assert bisection_limit(ORDERED_BELOW, [64], "low-round") == 4096 >> 1
    assert bisection_limit(ORDERED_BELOW, [64], "low-round", per_block=0.8) == 4096 >> 2
    # blocks never exceed half the frame
    assert block_schedule(100, 0.001, passes=3) == [50, 50, 50]


@pytest.mark.parametrize("n, limit", [(10_000, 1), (50_000, 4)])
def test_ordered_bisection_leaks_less(n, limit):
    # same frames, same schedule: the ordered bisection must correct everything, leak less
    # than bisecting every odd block at once, and take more rounds
    ordered, parallel = [], []
    for seed in range(20 if n < 50_000 else 4):
        a, b = _pair(300 + seed, n, 0.02)
        for lim, out in ((limit, ordered), (0, parallel)):
            fixed, rep = reconcile(a, b, 0.02, seed=seed, limit=lim)
            assert np.array_equal(fixed, a), f"seed {300 + seed} limit={lim}"
            out.append((rep.efficiency, rep.rounds))
    (f_o, r_o), (f_p, r_p) = np.mean(ordered, axis=0), np.mean(parallel, axis=0)
    assert f_o < f_p - 0.005 and r_o > r_p, (f_o, r_o, f_p, r_p)
    assert f_o < 1.06, f"seeds from 300: mean f {f_o}"


def test_bisection_limit_is_checked():
    a, b = _pair(2, 1000, 0.02)
    with pytest.raises(ValueError, match="bisection limit"):
        reconcile(a, b, 0.02, limit=-1)


def test_low_round_mode_uses_fewer_rounds():
    a, b = _pair(11, 100_000, 0.02)
    _, std = reconcile(a, b, 0.02, seed=11)
    _, low = reconcile(a, b, 0.02, seed=11, mode="low-round")
    assert low.rounds < std.rounds / 10, (low.rounds, std.rounds)
    assert low.rounds <= 50 and low.efficiency < 1.10, (low.rounds, low.efficiency)


@pytest.mark.parametrize("qber", [0.05, 0.06, 0.08])
def test_low_round_mode_meets_its_target_at_high_qber(qber):
    # f <= 1.10 in <= 50 rounds (means over the same four frames of 10^5 bits); at 5-6 % the
    # old k2 = 4 k1 took 57-116 rounds, at 8 % the old third pass gave f 1.096-1.113
    effs, rounds = [], []
    for seed in range(4):
        a, b = _pair(1100 + seed, 100_000, qber)
        fixed, rep = reconcile(a, b, qber, seed=seed, mode="low-round")
        assert np.array_equal(fixed, a), f"seed {1100 + seed} qber {qber}"
        effs.append(rep.efficiency)
        rounds.append(rep.rounds)
    assert np.mean(effs) <= 1.10 and np.mean(rounds) <= 50, \
        f"seeds 1100-1103, qber {qber}: f {effs}, rounds {rounds}"


def test_sparse_frames_bisect_pass_two_in_smaller_batches():
    # Bob's estimate from pass 1's odd blocks (no extra leak): at 5 % pass 1 leaves ~0.8 errors
    # per block of pass 2 (an eighth at a time), at 6 % ~1.05 (a quarter)
    from controller.postprocess.cascade import CascadeBob
    for qber, shift in ((0.05, 3), (0.06, 2)):
        a, b = _pair(1200, 100_000, qber)
        ks = block_schedule(a.size, qber, mode="low-round")
        bob = CascadeBob(b, *CascadeAlice(a, ks, seed=1).opening(), mode="low-round")
        errors = np.count_nonzero(a != b)
        assert abs(bob.expect - errors) < 0.1 * errors, (bob.expect, errors)
        assert bob.limit == (a.size + ks[1] - 1) // ks[1] >> shift, (qber, bob.limit)


def test_plane_queries_match_direct_parity():
    # a plane query asks the parity of the positions whose offset in their half of the range
    # has bit t set (syndrome decoding); ranges of odd and even length
    from controller.postprocess._cascade_core import PLANE
    from controller.postprocess.cascade import _permutations
    rng = np.random.default_rng(6)
    a = rng.integers(0, 2, 1000, dtype=np.uint8)
    alice = CascadeAlice(a, [16, 100], seed=5, interleave=False)     # _permutations' orders
    perm, _ = _permutations(1000, 5, [16, 100])
    rows, want = [], []
    for p, lo, hi in ((0, 0, 16), (1, 300, 400), (1, 17, 30), (0, 990, 1000), (1, 5, 9)):
        mid = lo + (hi - lo) // 2
        for t in range(int(np.ceil(np.log2(hi - mid)))):
            rows.append((p + (t + 1) * PLANE, lo, hi))
            offs = [i - lo for i in range(lo, mid)] + [i - mid for i in range(mid, hi)]
            sel = [lo + j for j, o in enumerate(offs) if (o >> t) & 1]
            want.append(bool(np.bitwise_xor.reduce(a[perm[p][sel]])))
    assert alice.answer(np.array(rows, dtype=np.int32)).tolist() == want
    with pytest.raises(ValueError, match="not a range"):
        alice.answer(np.array([[1 + 3 * PLANE, 0, 8]], dtype=np.int32))   # 2^2 >= half of 8


def test_syndrome_decoding_saves_rounds_and_stays_correct(monkeypatch):
    # low-round mode with and without syndrome decoding on the same frames: both correct
    # every frame (also at 8 %, where nodes with three errors give wrong bits that later
    # passes must undo); syndrome decoding takes far fewer rounds for a similar leak
    import controller.postprocess.cascade as cascade_mod
    runs = {}
    for load in (0.0, cascade_mod.SYNDROME_LOAD["low-round"]):
        monkeypatch.setitem(cascade_mod.SYNDROME_LOAD, "low-round", load)
        out = []
        for seed, q in [(s, 0.02) for s in range(6)] + [(s, 0.08) for s in range(6, 9)]:
            a, b = _pair(900 + seed, 20_000, q)
            fixed, rep = reconcile(a, b, q, seed=seed, mode="low-round")
            assert np.array_equal(fixed, a), f"seed {900 + seed} q {q} load {load}"
            out.append((rep.efficiency, rep.rounds))
        runs[load] = np.mean(out, axis=0)
    (f0, r0), (f1, r1) = runs.values()
    assert r1 < 0.75 * r0 and f1 < f0 + 0.02, (f0, r0, f1, r1)


def test_alice_parity_oracle_matches_direct_parity():
    from controller.postprocess.cascade import _permutations
    rng = np.random.default_rng(5)
    a = rng.integers(0, 2, 1000, dtype=np.uint8)
    ks = [16, 100, 500]                    # the last one is a BICONF half
    alice = CascadeAlice(a, ks, seed=99, interleave=False)           # _permutations' orders
    perm, pos = _permutations(1000, 99, ks)
    assert all(np.array_equal(pos[p][perm[p]], np.arange(1000)) for p in range(3))
    q = np.array([[0, 0, 10], [1, 37, 600], [1, 999, 1000], [2, 3, 500], [2, 0, 1000]])
    got = alice.answer(q)
    want = [np.bitwise_xor.reduce(a[perm[p][lo:hi]]) for p, lo, hi in q]
    assert got.tolist() == [bool(w) for w in want]
    setup, tops = alice.opening()
    assert tops.size == 1000 // 16 + 1 + 9 + 1     # pass 2's last derived; one for the BICONF half


def test_permutation_is_a_permutation_and_seeded():
    p1 = core.splitmix_permutation(5000, np.uint64(1))
    assert np.array_equal(np.sort(p1), np.arange(5000))
    assert np.array_equal(p1, core.splitmix_permutation(5000, np.uint64(1)))
    assert not np.array_equal(p1, core.splitmix_permutation(5000, np.uint64(2)))
    assert np.array_equal(core.inverse_permutation(p1)[p1], np.arange(5000))
    h = core.random_half_permutation(5001, np.uint64(3))
    assert np.array_equal(np.sort(h), np.arange(5001))
    # the subset comes first, each part in increasing order; about half is in the subset
    breaks = np.flatnonzero(np.diff(h) < 0)
    assert breaks.size == 1 and abs(breaks[0] + 1 - 2500) < 200


def test_reconcile_rejects_bad_input():
    a, b = _pair(1, 100, 0.02)
    with pytest.raises(ValueError, match="equal length"):
        reconcile(a, b[:-1], 0.02)
    with pytest.raises(ValueError, match="qber"):
        reconcile(a, b, 0.0)
    with pytest.raises(ValueError, match="unknown reconciliation method"):
        reconcile(a, b, 0.02, method="winnow")
    with pytest.raises(ValueError, match="cascade mode"):
        reconcile(a, b, 0.02, mode="fast")


@pytest.mark.slow
def test_cascade_frame_error_rate_and_efficiency_statistics():
    # 300 frames of 1e4 bits at 3 %: no failure (the stopping rule bounds the FER near
    # 2^-18 per frame), mean f < 1.07 (ordered bisection; 1.05 measured).
    fs, failed = [], []
    for seed in range(300):
        a, b = _pair(1000 + seed, 10_000, 0.03)
        fixed, rep = reconcile(a, b, 0.03, seed=seed)
        if not np.array_equal(fixed, a):
            failed.append(1000 + seed)
        fs.append(rep.efficiency)
    assert not failed, f"failing seeds {failed}"
    assert np.mean(fs) < 1.07, f"seeds 1000-1299: mean f {np.mean(fs)}"


def test_cascade_parties_reject_out_of_step_messages():
    from controller.postprocess.cascade import CascadeBob
    a, b = _pair(4, 2000, 0.05)
    ks = block_schedule(2000, 0.05)
    alice = CascadeAlice(a, ks, seed=4)
    with pytest.raises(ValueError, match="not a range"):
        alice.answer(np.array([[0, 5, 5]], dtype=np.int32))          # empty range
    with pytest.raises(ValueError, match="not a range"):
        alice.answer(np.array([[len(ks) + MAX_EXTRA_CHECKS, 0, 1]], dtype=np.int32))  # no such pass
    with pytest.raises(ValueError, match="query rows"):
        alice.answer(np.array([0.5, 1.0, 2.0]))
    bob = CascadeBob(b, *alice.opening())
    queries = bob.next_queries()
    assert queries is not None and len(queries) > 0
    with pytest.raises(ValueError, match="parities from Alice"):
        bob.next_queries(alice.answer(queries)[:-1])


def test_frame_that_ended_with_errors_is_corrected():
    # bench reconcile --qber 0.01 --bits 10000 --seed 15, frame 559: the earlier code ended
    # with 12 errors left (every check even); Bob must now end with none
    rng = np.random.default_rng(15)
    rng.integers(0, 2, 2000, dtype=np.uint8)
    rng.random(2000)
    for _ in range(560):
        a = rng.integers(0, 2, 10_000, dtype=np.uint8)
        b = a ^ (rng.random(10_000) < 0.01).astype(np.uint8)
    fixed, rep = reconcile(a, b, 0.01, seed=15 * 1_000_003 + 559)
    assert np.count_nonzero(a != b) == 92
    assert np.array_equal(fixed, a), f"{np.count_nonzero(fixed != a)} errors left"


@pytest.mark.parametrize("mode", ["standard", "low-round"])
def test_bob_ends_only_after_enough_clean_checks(mode):
    # every frame ends with >= CHECKS checks begun after the last correction; frames with a
    # correction during the checks ask Alice for more checks than the schedule has
    from controller.postprocess.cascade import CHECKS, CascadeBob
    extended = 0
    for seed in range(40):
        a, b = _pair(500 + seed, 10_000, 0.04)
        ks = block_schedule(a.size, 0.04, mode=mode)
        if mode == "low-round":
            del ks[2]            # without the third pass the checks find errors more often
        alice = CascadeAlice(a, ks, seed=seed, mode=mode)
        bob = CascadeBob(b, *alice.opening(), mode=mode)
        answers = None
        while (queries := bob.next_queries(answers)) is not None:
            answers = alice.answer(queries.copy())
        assert np.array_equal(bob.y, a), f"seed {500 + seed}"
        assert bob.clean_checks() >= CHECKS, f"seed {500 + seed}: {bob.clean_checks()} clean checks"
        extended += len(bob.keff) > len(ks)
    assert extended > 0


def test_clean_checks_bound_the_frame_error_rate():
    # two small-block passes leave errors in most frames at 1e4 bits, 2 %; four clean checks
    # after the last correction must catch all but a few (each passes with probability 1/2)
    bare, four = [], []
    for seed in range(100):
        a, b = _pair(700 + seed, 10_000, 0.02)
        for checks, out in ((0, bare), (4, four)):
            fixed, _ = reconcile(a, b, 0.02, seed=seed, passes=2, checks=checks)
            out.append(not np.array_equal(fixed, a))
    assert np.mean(bare) > 0.4, f"seeds 700-799: FER without checks {np.mean(bare)}"
    assert np.mean(four) < 0.15, f"seeds 700-799: FER with 4 checks {np.mean(four)}"


def test_bob_refuses_block_sizes_past_the_key():
    """Bob sizes his caches from Alice's (not yet authenticated) setup: a block size past the
    key's length, as a flipped bit on the way gives, is refused before any allocation."""
    from controller.postprocess.cascade import CascadeBob
    a = np.random.default_rng(7).integers(0, 2, 1000).astype(np.uint8)
    setup, tops = CascadeAlice(a, [16, 128], seed=3).opening()
    CascadeBob(a, setup, tops)                      # the genuine setup is taken
    forged = setup.copy()
    forged[2] = np.uint64(1) << np.uint64(56)
    with pytest.raises(ValueError, match=r"block sizes must be 1\.\.1000"):
        CascadeBob(a, forged, tops)
    with pytest.raises(ValueError, match="block sizes"):
        CascadeAlice(a, [16, 1001], seed=3)


@pytest.mark.parametrize("n,k1,k2", [(10_000, 32, 256), (10_000, 64, 128), (1001, 7, 100), (100_000, 8, 64)])
def test_interleaved_pass2_never_puts_two_bits_of_a_pass1_block_together(n, k1, k2):
    # pass 2 read column by column from pass 1's blocks: a permutation, seeded, and every
    # block of pass 2 (k2 <= pass 1's block count) holds bits of k2 different blocks of pass 1
    from controller.postprocess.cascade import _pass_order
    for seed in (3, 4):
        perm1 = np.empty(n, dtype=np.int32)
        perm2 = np.empty(n, dtype=np.int32)
        pos2 = np.empty(n, dtype=np.int32)
        _pass_order(n, seed, 0, k1, perm1, None, k1)
        _pass_order(n, seed, 1, k2, perm2, pos2, k1)
        assert np.array_equal(np.sort(perm2), np.arange(n)), f"seed {seed}"
        assert np.array_equal(pos2[perm2], np.arange(n)), f"seed {seed}"
        block1 = np.empty(n, dtype=np.int64)
        block1[perm1] = np.arange(n) // k1
        owners = block1[perm2]
        for lo in range(0, n, k2):
            part = owners[lo:lo + k2]
            assert np.unique(part).size == part.size, f"seed {seed} block of pass 2 at {lo}"
    other = np.empty(n, dtype=np.int32)
    _pass_order(n, 5, 1, k2, other, None, k1)
    assert not np.array_equal(other, perm2)


def test_interleaved_pass2_parties_agree_and_correct():
    # both parties build the interleaved order (standard mode, short frames, by default);
    # passes after the second and a first pass that is a check keep their own orders
    from controller.postprocess.cascade import CascadeBob, interleaved
    assert interleaved(10_000, "standard") and not interleaved(10_000, "low-round")
    assert not interleaved(ORDERED_BELOW, "standard")
    for seed, q in ((60, 0.01), (61, 0.02), (62, 0.08)):
        a, b = _pair(seed, 10_000, q)
        ks = block_schedule(a.size, q)
        alice = CascadeAlice(a, ks, seed=seed)            # standard mode: interleaved by default
        bob = CascadeBob(b, *alice.opening())
        assert alice.after == bob.after == ks[0]
        answers = None
        while (queries := bob.next_queries(answers)) is not None:
            answers = alice.answer(queries.copy())
        assert np.array_equal(bob.y, a), f"seed {seed} q {q}"
        low = CascadeAlice(a, ks, seed=seed, mode="low-round")
        assert low.after == 0 and CascadeBob(b, *low.opening(), mode="low-round").after == 0
        plain = CascadeAlice(a, ks, seed=seed, interleave=False)
        built = len(ks)          # rows after these are room for added checks
        assert np.array_equal(plain.px[0], alice.px[0]) and np.array_equal(plain.px[2:built], alice.px[2:built])
        assert not np.array_equal(plain.px[1], alice.px[1])
    x, y = _pair(63, 3000, 0.05)
    fixed, _ = reconcile(x, y, 0.05, seed=1, schedule=[1500, 64] + [1500] * 18, interleave=True)
    assert np.array_equal(fixed, x)


@pytest.mark.parametrize("k", [64, 68, 100])
def test_bisection_of_any_block_size_leaks_the_tree_depth(k):
    # one pass of 150 blocks, no checks: each odd block costs the depth of the leaf its
    # bisection ends in, on average the expected depth of the midpoint tree for one error
    # (log2 k for powers of two, a little more otherwise); the other child's parity is derived
    from controller.postprocess.cascade import CascadeBob

    def depth(m):
        return 0.0 if m <= 1 else 1.0 + ((m // 2) * depth(m // 2) + (m - m // 2) * depth(m - m // 2)) / m

    asked, odd = 0, 0
    for seed in range(20):
        a, b = _pair(1200 + seed, 150 * k, 0.02)
        alice = CascadeAlice(a, [k], seed=seed)
        bob = CascadeBob(b, *alice.opening(), checks=0)
        odd += int(np.count_nonzero((a ^ b)[bob.perm[0]].reshape(150, k).sum(axis=1) % 2))
        answers = None
        while (queries := bob.next_queries(answers)) is not None:
            asked += len(queries)
            answers = alice.answer(queries.copy())
    per_block = asked / odd
    assert abs(per_block - depth(k)) < 0.08, f"seeds 1200-1219, k {k}: {per_block} per odd block, tree {depth(k)}"


@pytest.mark.parametrize("qber", [0.02, 0.08])
def test_bob_answers_one_bit_queries_that_other_trees_gave(qber, monkeypatch):
    # a one-bit query whose bit Bob knows (corrected, a one-bit node of another tree, or the
    # left bit of a known two-bit node whose right bit he knows) is answered by Bob, never
    # asked: the same corrections and checks, fewer parities disclosed (measured: 3.7 bits
    # per frame at 2 %, 55 at 8 %, N = 10^4)
    from controller.postprocess import cascade as cas

    def run(a, b, seed):
        ks = block_schedule(a.size, qber)
        alice = CascadeAlice(a, ks, seed, interleave=True)
        setup, tops = alice.opening()
        bob = cas.CascadeBob(b, setup, tops, interleave=True)
        leak, answers = tops.size, None
        while (queries := bob.next_queries(answers)) is not None:
            answers = alice.answer(queries.copy())
            leak += answers.size
        return bob.y.copy(), int(bob.started[1]), len(bob.keff), leak

    saved = []
    for seed in range(8):
        a, b = _pair(1300 + seed, 10_000, qber)
        y, flips, passes, leak = run(a, b, seed)
        with monkeypatch.context() as m:
            m.setattr(cas.core, "drop_known", lambda q, q_cidx, nq, *rest: nq)
            y0, flips0, passes0, leak0 = run(a, b, seed)
        assert np.array_equal(y, a) and np.array_equal(y0, a), f"seed {1300 + seed}"
        assert (flips, passes) == (flips0, passes0), f"seed {1300 + seed}"
        saved.append(leak0 - leak)
    assert min(saved) >= 0 and np.mean(saved) > (1.5 if qber < 0.05 else 30), f"seeds 1300-1307: saved {saved}"


def _gf2_rank(rows):
    """Rank over GF(2) of 0/1 rows (one per parity a party discloses)."""
    packed = np.packbits(np.asarray(rows, dtype=np.uint8), axis=1)
    pivots = []                                  # (column, reduced row)
    for row in packed:
        row = row.copy()
        for col, piv in pivots:
            if (row[col >> 3] >> (7 - (col & 7))) & 1:
                row ^= piv
        nz = np.flatnonzero(row)
        if nz.size:
            byte = int(nz[0])
            pivots.append((8 * byte + 7 - int(row[byte]).bit_length() + 1, row))
    return len(pivots)


@pytest.mark.parametrize("cseed", [43 * 1_000_003 + 16684, 301 * 1_000_003 + 9281, 7])
def test_check_subsets_are_independent_of_each_other_and_of_the_blocks(cseed):
    # the stopping rule's premise (a residual pattern even on every block passes each later
    # check with probability 1/2, and C checks together with 2^-C) needs each check's subset
    # outside the span of the blocks of passes 1-2 and of the other checks: over GF(2) the 18
    # schedule checks and 16 extra ones add 34 to the rank of the blocks (frames 16684 of
    # bench seed 43 and 9281 of seed 301 ended with errors behind 18 / 10 even checks)
    from controller.postprocess.cascade import _pass_order
    n = 10_000
    ks = block_schedule(n, 0.02)
    perm, pos = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.int32)
    blocks, checks = [], []
    for p in range(2 + 18 + 16):
        k, _ = _pass_order(n, cseed, p, ks[p] if p < len(ks) else (n + 1) // 2, perm, pos, ks[0])
        for lo in range(0, n, k) if p < 2 else [0]:
            row = np.zeros(n, dtype=np.uint8)
            row[perm[lo:lo + k]] = 1
            (blocks if p < 2 else checks).append(row)
    base = _gf2_rank(blocks)
    assert base == len(blocks) - 1, f"cascade seed {cseed}"   # each pass's blocks sum to the whole key
    assert _gf2_rank(blocks + checks) == base + len(checks), f"cascade seed {cseed}"
