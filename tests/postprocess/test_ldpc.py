"""LDPC reconciliation: QC codes, the layered decoder, exact leak accounting, rate adaptation."""

import math

import numpy as np
import pytest
from numba import njit

from controller.postprocess import _ldpc_core as core
from controller.postprocess import _qc
from controller.postprocess import ldpc
from controller.postprocess.channel import LocalChannel
from controller.postprocess.infotheory import h2
from controller.postprocess.reconcile import reconcile


def _pair(seed, n, qber):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < qber).astype(np.uint8)
    return a, b


def _dense(code):
    h = np.zeros((code.m, code.n), dtype=np.uint8)
    chk, var = code.edges()
    np.add.at(h, (chk, var), 1)
    return h


def _lifted_four_cycles(code):
    """Count the 4-cycles of the lifted graph: pairs of checks that share two variables."""
    chk, var = code.edges()
    order = np.lexsort((chk, var))
    chk, var = chk[order], var[order]
    pairs = []
    for v in np.unique(var):
        cs = chk[var == v]
        i, j = np.triu_indices(cs.size, 1)
        pairs.append(cs[i] * code.m + cs[j])
    _, counts = np.unique(np.concatenate(pairs), return_counts=True)
    return int((counts * (counts - 1) // 2).sum())


class RecordingChannel(LocalChannel):
    """A local channel that also keeps (sender, bits, leaks, tag) of every message."""

    def __init__(self):
        super().__init__()
        self.log = []

    def send(self, sender, payload, *, bits=None, leaks_key=False, tag=""):
        before = self.stats.bits
        super().send(sender, payload, bits=bits, leaks_key=leaks_key, tag=tag)
        self.log.append((sender, self.stats.bits - before, leaks_key, tag))


def recorded(a, b, qber, seed, **options):
    """Reconcile by LDPC in frames of 20 000 bits over a RecordingChannel, Alice's randomness
    from ``seed``; return (corrected key, report, message log)."""
    ch = RecordingChannel()
    fixed, rep = reconcile(a, b, qber, "ldpc", ch, seed=seed, frame_bits=20_000,
                           rng=np.random.default_rng(seed), **options)
    return fixed, rep, ch.log


@pytest.mark.parametrize("kb,mb,z,seed", [(6, 4, 16, 1), (20, 8, 40, 2), (60, 12, 200, 3), (60, 12, 16, 4)])
def test_qc_code_structure_and_four_cycles(kb, mb, z, seed):
    code = _qc.build(kb, mb, z, seed)
    h = _dense(code)
    assert h.max() == 1, f"seed {seed}: a variable twice in a check"
    deg = h.sum(axis=0)
    assert np.all(deg[kb * z:] == 2), "staircase variables have degree 2"
    info_rows = np.diff(code.row_ptr) - 2            # each row holds two staircase entries
    assert info_rows.max() - info_rows.min() <= 1
    # every base 4-cycle the shift search could not avoid lifts to z 4-cycles, no others exist
    assert _lifted_four_cycles(code) == code.four_cycles * z, f"seed {seed}"
    if z >= 40:
        assert code.four_cycles == 0, f"seed {seed}: 4-cycle in the lifted graph"
    again = _qc.build(kb, mb, z, seed)
    other = _qc.build(kb, mb, z, seed + 1)
    assert np.array_equal(code.shifts, again.shifts) and np.array_equal(code.cols, again.cols)
    assert not np.array_equal(code.shifts, other.shifts)


@pytest.mark.parametrize("seed", [4, 5])
def test_syndrome_kernel_matches_the_dense_matrix(seed):
    code = _qc.build(12, 5, 24, seed)
    word = np.random.default_rng(seed).integers(0, 2, code.n, dtype=np.uint8)
    want = (_dense(code).astype(np.int64) @ word) % 2
    assert np.array_equal(ldpc.syndrome(code, word), want.astype(np.uint8)), f"seed {seed}"


@njit
def _exp_neg(x):
    out = np.empty_like(x)
    core._exp_neg_lanes(x, out)
    return out


@njit
def _ln(x):
    out = np.empty_like(x)
    core._ln_lanes(x, out)
    return out


def _padded(x):
    return np.concatenate([x, np.ones(-x.size % 8, x.dtype)])


def test_exp_and_ln_approximations():
    # float32 rounding of x log2 e alone gives a relative error of x 6e-8
    x = np.concatenate([np.linspace(0, 69, 6901), np.geomspace(1e-7, 1, 200)]).astype(np.float32)
    got = _exp_neg(_padded(x))[:x.size].astype(np.float64)
    want = np.exp(-x.astype(np.float64))
    assert np.all(np.abs(got - want) <= 2e-7 * (1 + x) * want)
    assert _exp_neg(np.full(8, 200.0, np.float32))[0] == np.float32(2.0 ** -100)     # clamped, still normal
    w = np.concatenate([np.geomspace(1e-30, 1e30, 4001), np.linspace(0.5, 2, 1001),
                        np.linspace(0.999, 1.001, 201)]).astype(np.float32)
    got = _ln(_padded(w))[:w.size].astype(np.float64)
    want = np.log(w.astype(np.float64))
    assert np.all(np.abs(got - want) <= 1e-6 + 1e-7 * np.abs(want))


def _one_row(ts, ssign, seed, layer):
    """Run ``layer`` (core._layer_sp or _layer_am) on one base row of d circulants lifted by
    z whose check lane z has the inputs ts[:, z], with random shifts (some blocks of 8 checks
    wrap around their column); return (messages (d, z), new posteriors (d, z), unmet checks)."""
    d, z = ts.shape
    rng = np.random.default_rng(seed)
    row_ptr, cols = np.array([0, d]), np.arange(d)
    shifts = rng.integers(0, z, d)
    shifts[:2] = [0, 8 % z]                           # and two that do not wrap
    var = cols[:, None] * z + (np.arange(z)[None, :] + shifts[:, None]) % z    # input j of check lane
    post = np.zeros(d * z, dtype=np.float32)
    post[var] = ts
    msg = np.zeros(d * z, dtype=np.float32)
    st = np.zeros((z // 8, 10, 8), dtype=np.float32)
    unsat = layer(row_ptr, cols, shifts, 0, ssign, post, msg, np.zeros(d * z, np.float32), st)
    return msg.reshape(d, z), post[var], unsat


def _unmet(post, ssign):
    return int((np.prod(np.where(post < 0, -1.0, 1.0), axis=0) != ssign).sum())


def test_check_update_with_erased_tiny_and_saturated_inputs():
    # one check per lane, 4 inputs each: an erased input (LLR 0), tiny and saturated LLRs
    ts = np.array([[0.0, 2.0, -3.0, 30.0], [30, 30, -30, 30], [1e-3, -1e-3, 5, 5],
                   [0.5, 1.5, -2.5, 8.0], [0.0, 0.0, 4.0, -4.0], [1, 2, 3, 4], [-1, 7, -0.2, 9],
                   [25, -0.01, 3, 3]], dtype=np.float32).T.copy()
    ssign = np.array([1, -1, 1, -1, 1, 1, -1, 1], dtype=np.float32)
    msg, post, unsat = _one_row(ts, ssign, 3, core._layer_sp)
    t = ts.astype(np.float64)
    for j in range(4):
        others = np.delete(t, j, axis=0)
        sign = ssign * np.prod(np.where(others < 0, -1.0, 1.0), axis=0)
        # the kernel floors 1 - P at 2^-25 (1 + P): |message| <= 25 ln 2 = 17.3 = 2 atanh(1 - 2^-24)
        mag = 2 * np.arctanh(np.minimum(np.prod(np.tanh(np.abs(others) / 2), axis=0), 1 - 2.0 ** -24))
        assert np.all(np.abs(msg[j] - sign * mag) <= 1e-4 * mag + 1e-6), (j, msg[j], sign * mag)
    assert np.allclose(post, ts + msg, atol=1e-5)                  # new posteriors
    # erased input(s): no information to the others (within the vector division's 2^-24:
    # LLVM divides <8 x float> by a refined reciprocal estimate under fast-math)
    assert np.all(np.abs(msg[:, 0][[1, 2, 3]]) <= 2.0 ** -23) and np.all(np.abs(msg[:, 4]) <= 2.0 ** -23)
    assert unsat == _unmet(post, ssign)


def _reference_check_sp(t, ssign):
    """The sum-product check update (``decoder="sp"``) of one check, float64, from its
    definition: to each input, 2 atanh of the product of the others' tanh(|t| / 2), with the
    syndrome sign times the others' signs."""
    th = np.tanh(np.abs(t) / 2)
    sg = np.where(t < 0, -1.0, 1.0)
    out = np.empty(t.size)
    for i in range(t.size):
        others = np.delete(np.arange(t.size), i)
        out[i] = ssign * np.prod(sg[others]) * 2 * np.arctanh(min(np.prod(th[others]), 1 - 2.0 ** -24))
    return out


def _reference_check_am(t, ssign):
    """The approximate check update (``decoder="amin"``) of one check, float64, from its
    definition: exact sum-product messages to the two least reliable inputs; to any other
    input the tangent of the exact message in phi(|t_i|) at 0 (phi(x) = -ln tanh(x / 2) taken
    as 2 e^-|t_i|), capped at the second input's message."""
    def sp(idx):                  # exact magnitude excluding idx
        prod = np.prod(np.tanh(np.abs(np.delete(t, idx)) / 2))
        return 2 * np.arctanh(min(prod, 1 - 2.0 ** -24))
    order = np.argsort(np.abs(t), kind="stable")
    i1, i2 = order[0], order[1]
    m_all = 2 * np.arctanh(min(np.prod(np.tanh(np.abs(t) / 2)), 1 - 2.0 ** -24))
    out = np.empty(t.size)
    for i in range(t.size):
        if i == i1:
            mag = sp(i1)
        elif i == i2:
            mag = sp(i2)
        else:
            mag = min(m_all + 2 * np.sinh(m_all) * np.exp(-abs(t[i])), sp(i2))
        out[i] = ssign * np.prod(np.where(np.delete(t, i) < 0, -1.0, 1.0)) * mag
    return out


@pytest.mark.parametrize("seed", [21, 22])
def test_approximate_check_update_matches_its_definition_and_brackets_sum_product(seed):
    # 64 checks (lanes) of 12 inputs: random LLRs, some tiny, some saturated, one check with
    # two erased inputs
    rng = np.random.default_rng(seed)
    d, z = 12, 64
    ts = (rng.choice([-1.0, 1.0], (d, z)) * rng.exponential(3.0, (d, z))).astype(np.float32)
    ts[3, :8] = 30.0
    ts[5, 8:16] = 1e-3
    ts[:, 16] = 0.0
    ts[0, 16] = 2.0
    ssign = rng.choice([-1.0, 1.0], z).astype(np.float32)
    msg, post, unsat = _one_row(ts, ssign, seed, core._layer_am)
    t = ts.astype(np.float64)
    for lane in range(z):
        want = _reference_check_am(t[:, lane], ssign[lane])
        assert np.allclose(msg[:, lane], want, rtol=1e-4, atol=1e-5), f"seed {seed} lane {lane}"
        # every magnitude lies between that of all inputs' product and the exact sum-product one
        th = np.tanh(np.abs(t[:, lane]) / 2)
        exact = [2 * np.arctanh(min(np.prod(np.delete(th, i)), 1 - 2.0 ** -24)) for i in range(d)]
        m_all = 2 * np.arctanh(min(np.prod(th), 1 - 2.0 ** -24))
        mag = np.abs(msg[:, lane])
        assert np.all(mag >= m_all - 1e-4) and np.all(mag <= np.array(exact) + 1e-4), f"seed {seed} lane {lane}"
    assert np.allclose(post, ts + msg, atol=1e-5), f"seed {seed}"
    assert np.all(msg[1:, 16] == 0)         # two erased inputs: no information to the others
    assert unsat == _unmet(post, ssign), f"seed {seed}"


def _reference_layered(code, ssign, post, msg, iters, check):
    """Float64 layered decoding over the lifted graph, check by check, with the check update
    ``check(t, ssign)`` (messages of one check from its inputs)."""
    z = code.z
    for _ in range(iters):
        for r in range(code.mb):
            es = list(range(code.row_ptr[r], code.row_ptr[r + 1]))
            for lane in range(z):
                vs = [code.cols[e] * z + (lane + code.shifts[e]) % z for e in es]
                ts = np.array([post[v] - msg[e, lane] for v, e in zip(vs, es)])
                out = check(ts, ssign[r * z + lane])
                for i, (v, e) in enumerate(zip(vs, es)):
                    msg[e, lane] = out[i]
                    post[v] = ts[i] + out[i]


@pytest.mark.parametrize("seed,z", [(6, 8), (7, 8), (8, 24)])
@pytest.mark.parametrize("approx", [False, True], ids=["sp", "amin"])
def test_decoder_matches_its_float64_reference(seed, z, approx):
    code = _qc.build(9, 4, z, seed, profile={3: 0.5, 4: 0.5})
    rng = np.random.default_rng(seed)
    a, b = _pair(seed, code.n, 0.05)
    ssign = np.where(ldpc.syndrome(code, a) == 0, 1.0, -1.0).astype(np.float32)
    llr = (np.where(b == 0, 1.0, -1.0) * rng.uniform(0.2, 3.0, code.n)).astype(np.float32)
    post, msg = llr.copy(), np.zeros(code.cols.size * code.z, dtype=np.float32)
    it, ok = core.decode(code.row_ptr, code.cols, code.shifts, code.z, ssign, post, msg, 2, 10, approx)
    ref_post, ref_msg = llr.astype(np.float64), np.zeros((code.cols.size, code.z))
    _reference_layered(code, ssign, ref_post, ref_msg, it,
                       _reference_check_am if approx else _reference_check_sp)
    assert np.allclose(post, ref_post, rtol=1e-3, atol=1e-3), f"seed {seed}"
    assert np.allclose(msg, ref_msg.ravel(), rtol=1e-3, atol=1e-3), f"seed {seed}"
    if approx:      # and it is not the sum-product decoder
        sp_post, sp_msg = llr.copy(), np.zeros_like(msg)
        core.decode(code.row_ptr, code.cols, code.shifts, code.z, ssign, sp_post, sp_msg, 2, 10, False)
        assert not np.allclose(sp_msg, msg, rtol=1e-3, atol=1e-3), f"seed {seed}"


@pytest.mark.parametrize("approx", [False, True], ids=["sp", "amin"])
def test_decoder_refuses_a_lift_not_a_multiple_of_8(approx):
    code = _qc.build(9, 4, 12, 1, profile={3: 0.5, 4: 0.5})
    post, msg = np.ones(code.n, np.float32), np.zeros(code.cols.size * code.z, np.float32)
    ssign = np.ones(code.m, np.float32)
    with pytest.raises(ValueError, match="multiple of 8"):
        core.decode(code.row_ptr, code.cols, code.shifts, code.z, ssign, post, msg, 2, 10, approx)


@pytest.mark.parametrize("seed", [11, 12])
def test_decoder_recovers_a_noisy_word_and_meets_the_syndrome(seed):
    code = _qc.build(160, 40, 64, seed)                  # rate 0.8, 12 800 bits
    a, b = _pair(seed, code.n, 0.02)
    ssign = np.where(ldpc.syndrome(code, a) == 0, 1.0, -1.0).astype(np.float32)
    l0 = math.log(0.98 / 0.02)
    post = np.where(b == 0, l0, -l0).astype(np.float32)
    msg = np.zeros(code.cols.size * code.z, dtype=np.float32)
    iters, ok = core.decode(code.row_ptr, code.cols, code.shifts, code.z, ssign, post, msg, 100, 20)
    bits = (post < 0).astype(np.uint8)
    assert ok and np.array_equal(bits, a), f"seed {seed}: {int((bits != a).sum())} errors left"
    assert core.hard_ok(code.row_ptr, code.cols, code.shifts, code.z, ssign, post)
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
    assert rep.efficiency >= ldpc.start_efficiency(qber) * 0.999


@pytest.mark.parametrize("decoder", ["sp", "amin"])
@pytest.mark.parametrize("qber,seed", [(0.02, 31), (0.05, 32), (0.08, 33)])
def test_default_frame_decodes_at_each_design_qber(qber, seed, decoder):
    # one default frame of 10^5 bits: corrected, hash-checked, f within the blind range
    a, b = _pair(seed, 100_000, qber)
    fixed, rep = reconcile(a, b, qber, method="ldpc", seed=seed, decoder=decoder,
                           rng=np.random.default_rng(seed))
    assert rep.failed_frames == 0 and np.array_equal(fixed, a), f"seed {seed} {decoder}"
    assert ldpc.start_efficiency(qber) <= rep.efficiency < 1.15, f"seed {seed} {decoder}: f {rep.efficiency}"


@pytest.mark.parametrize("warm", [False, True])
def test_every_message_is_consumed_and_retries_converge(warm):
    a, b = _pair(5, 6000, 0.05)
    ch = LocalChannel()
    fixed, failed = ldpc.ldpc(a, b, 0.05, ch, seed=5, f_start=1.0, step_f=0.01, steps=12, warm=warm,
                              rng=np.random.default_rng(5))
    assert failed == 0 and np.array_equal(fixed, a), f"seed 5 warm {warm}"
    assert ch.pending("alice") == 0 and ch.pending("bob") == 0
    assert ch.stats.rounds >= 2       # f_start = 1 is below any code's threshold: blind retries ran


@pytest.mark.parametrize("decoder", ["sp", "amin"])
def test_key_bit_reveals_after_the_punctured_bits_correct_the_frame(decoder):
    # one punctured step from f 1.0, on a frame with more errors than the design QBER (5.5 %
    # against 5 %: it needs f > 1.07): the retries run out of punctured bits and disclose key bits
    a, b = _pair(8, 6000, 0.055)
    ch = RecordingChannel()
    fixed, failed = ldpc.ldpc(a, b, 0.05, ch, seed=8, f_start=1.0, step_f=0.01, steps=1, decoder=decoder,
                              rng=np.random.default_rng(8))
    assert failed == 0 and np.array_equal(fixed, a), f"seed 8 {decoder}"
    plan = ldpc.plan_frame(6000, 0.05, f_start=1.0, step_f=0.01, steps=1)
    reveals = [bits for sender, bits, leaks, _ in ch.log[5:] if sender == "alice"]
    assert sum(reveals) > plan.p, "no key bit was disclosed"
    assert sum(reveals) == min(len(reveals) * plan.delta, plan.p + plan.k)


@pytest.mark.parametrize("qber", [0.01, 0.02, 0.05, 0.08, 0.11, 0.15])
@pytest.mark.parametrize("k", [1000, 20_000, 100_000])
def test_plan_and_layout_puncture_and_shorten_consistently(qber, k):
    plan = ldpc.plan_frame(k, qber, f_start=1.06, step_f=0.02, steps=6)
    hk = k * h2(qber)
    assert plan.m - plan.p >= math.ceil(1.06 * hk) > plan.m - plan.p - plan.z
    assert plan.delta == math.ceil(0.02 * hk) and plan.p >= 6 * plan.delta
    assert plan.n == plan.k + plan.p + plan.s and 0 <= plan.s < plan.z and plan.z % 8 == 0
    lay = ldpc.layout(plan, seed=9)
    assert lay.punct.size == plan.p == np.unique(lay.punct).size
    assert lay.short.size == plan.s and lay.key_pos.size == k
    everything = np.concatenate([lay.punct, lay.short, lay.key_pos])
    assert np.array_equal(np.sort(everything), np.arange(plan.n))
    pairs = np.concatenate([lay.pair_a, lay.pair_b])
    assert np.unique(pairs).size == 2 * plan.p                  # no check holds two punctured
    assert np.array_equal(np.sort(np.concatenate([pairs, lay.rest])), np.arange(plan.m))
    if k <= 20_000:
        chk, var = ldpc.code(plan).edges()
        where = {}
        for c, v in zip(chk, var):
            where.setdefault(int(v), []).append(int(c))
        for v, ca, cb in zip(lay.punct[:200], lay.pair_a[:200], lay.pair_b[:200]):
            assert sorted(where[int(v)]) == sorted([int(ca), int(cb)])


def test_puncturing_pads_hide_exactly_the_punctured_bits():
    plan = ldpc.plan_frame(5000, 0.05)
    lay = ldpc.layout(plan, seed=3)
    c = ldpc.code(plan)
    rng = np.random.default_rng(3)
    key = rng.integers(0, 2, plan.k, dtype=np.uint8)
    syndromes = []
    for _ in range(2):                       # same key, fresh punctured bits
        word = np.zeros(plan.n, dtype=np.uint8)
        word[lay.key_pos] = key
        word[lay.punct] = rng.integers(0, 2, plan.p, dtype=np.uint8)
        syndromes.append(ldpc.syndrome(c, word))
    one, two = syndromes
    # what is metered as leaked depends on the key only; the pads change with the secret bits
    assert np.array_equal(one[lay.rest], two[lay.rest])
    assert np.array_equal(one[lay.pair_a] ^ one[lay.pair_b], two[lay.pair_a] ^ two[lay.pair_b])
    assert not np.array_equal(one[lay.pair_a], two[lay.pair_a])


def test_start_efficiency_follows_the_table():
    (q0, f0), (q1, f1) = ldpc.F_START[:2]
    assert ldpc.start_efficiency(q0) == f0 and ldpc.start_efficiency(q0 / 4) == f0
    assert ldpc.start_efficiency((q0 + q1) / 2) == pytest.approx((f0 + f1) / 2)
    assert ldpc.start_efficiency(ldpc.F_START[-1][0] * 2) == ldpc.F_START[-1][1]
    plan = ldpc.plan_frame(20_000, q1)
    assert plan.m - plan.p >= f1 * 20_000 * h2(q1)


def test_plan_frame_rejects_what_it_cannot_do():
    with pytest.raises(ValueError, match="at least 64"):
        ldpc.plan_frame(10, 0.02)
    with pytest.raises(ValueError, match="use Cascade"):
        ldpc.plan_frame(10_000, 0.3)
    with pytest.raises(ValueError, match="qber"):
        ldpc.plan_frame(10_000, 0.0)
    with pytest.raises(ValueError, match="punctured"):
        ldpc.plan_frame(10_000, 0.05, step_f=0.05, steps=100)
    with pytest.raises(ValueError, match="at least 64 bits"):
        reconcile(np.zeros(10, np.uint8), np.zeros(10, np.uint8), 0.02, method="ldpc")
    with pytest.raises(ValueError, match="use Cascade"):
        a, b = _pair(1, 1000, 0.3)
        reconcile(a, b, 0.3, method="ldpc")
    with pytest.raises(ValueError, match="mb >= 2"):
        _qc.build(4, 1, 8, 0)


def test_failure_is_reported_when_the_qber_is_far_above_design():
    a, b = _pair(3, 8000, 0.10)            # 10 % errors, designed for 2 %
    ch = LocalChannel()
    fixed, rep = reconcile(a, b, 0.02, method="ldpc", channel=ch, seed=3, max_retries=2,
                           rng=np.random.default_rng(3))
    assert rep.failed_frames == 1, "seed 3"
    assert not np.array_equal(fixed, a)
    assert rep.leaked_bits == ch.stats.leaked_bits


@pytest.mark.parametrize("decoder", ["sp", "amin", "q16"])
def test_bench_runs_either_decoder(decoder):
    from bench import reconcile as bench_reconcile
    out = bench_reconcile.run(["--method", "ldpc", "--decoder", decoder, "--qber", "0.05", "--bits", "20000",
                               "--frames", "2", "--seed", "3"])
    assert out["decoder"] == decoder and out["frame_error_rate"] == 0.0, "seed 3"
    assert 1.0 < out["efficiency"] < 1.3
    assert bench_reconcile.run(["--method", "ldpc", "--bits", "5000", "--frames", "1"])["decoder"] == ldpc.Options.decoder
    with pytest.raises(SystemExit):
        bench_reconcile.run(["--method", "cascade", "--decoder", decoder])


@pytest.mark.parametrize("n,frame_bits", [(64, 100_000), (99_999, 100_000), (100_000, 100_000),
                                          (199_999, 100_000), (200_000, 100_000), (1_234_567, 100_000),
                                          (6000, 2000), (7999, 2000)])
def test_frames_are_near_equal_and_at_least_frame_bits(n, frame_bits):
    bounds = ldpc._frames(n, frame_bits)
    sizes = np.array([hi - lo for lo, hi in bounds])
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
    assert sizes.max() - sizes.min() <= 1
    if n < frame_bits:
        assert len(bounds) == 1
    else:
        assert sizes.min() >= frame_bits and sizes.max() < 2 * frame_bits, sizes


def test_blind_step_grows_for_short_frames():
    assert ldpc.step_efficiency(100_000) == ldpc.step_efficiency(1_000_000) == ldpc.STEP_F
    assert ldpc.step_efficiency(10_000) == pytest.approx(ldpc.STEP_F * math.sqrt(10))
    assert ldpc.step_efficiency(100) == ldpc.STEP_F_MAX
    hk = 10_000 * h2(0.02)
    assert ldpc.plan_frame(10_000, 0.02).delta == math.ceil(ldpc.step_efficiency(10_000) * hk)
