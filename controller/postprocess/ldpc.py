"""Blind, rate-adaptive LDPC reconciliation (one-way syndrome plus incremental reveals).

Per frame of k key bits (a key is cut into near-equal frames of at least ``frame_bits`` and
fewer than 2 ``frame_bits`` bits, a shorter key into one frame: f falls with the frame length):

* Code: a quasi-cyclic code (``_qc.build``): kb information and mb staircase base columns
  lifted by z (a multiple of 8, chosen so that nb = kb + mb is about ``BASE_COLUMNS``, but
  z >= ``MIN_LIFT`` where that leaves ``MIN_BASE_COLUMNS``),
  built from public numbers in milliseconds and kept in memory.  The n = (kb + mb) z
  variables hold the k key bits, p punctured staircase bits and s < z shortened zeros.
* Puncturing: the p punctured variables carry Alice's private random bits.  Each sits in
  two checks a, b of an identity circulant pair (even staircase blocks, so no check holds
  two); Alice sends s_a XOR s_b with the leaky part and s_a apart: s_a is one-time padded
  by the punctured bit, independent of the key and of every other message, so only m - p
  syndrome bits are metered as leaked (``leaks_key=True``) and the p pads are not.
* Rate: m - p >= ceil(f_start k h(Q)) (rounded up to whole circulants; f_start from the
  QBER by ``F_START`` unless given); p >= steps x delta with delta = ceil(step_f k h(Q)).
  By default 7 steps of 0.01 at 2 %, 4 at 5-8 % (``PUNCTURED_STEPS``): the first retries
  disclose punctured bits (each worth a whole bit to the decoder), later ones key bits
  (shortening: a disclosed key bit tells the decoder only h(Q) bits; it is the fallback
  that keeps the frame error rate low).
* Blind: when Bob's decoding fails (no convergence, or converged to a word whose hash
  differs from Alice's), Alice discloses the values of the next delta punctured bits
  (then, when none is left, of delta key bits), each metered as one leaked bit, and Bob
  decodes again from the failed attempt's state (``warm``), up to ``max_retries`` times.
  Frames are handled together: one flight each way per attempt, whatever their number.
  The first ``pre`` steps (by QBER, ``PRE_STEPS``) go with the syndrome, before Bob's first
  attempt: the leak of that many failed attempts, without their iterations and round trips
  (they count against ``max_retries``).
* Check: Alice sends with the syndrome a polynomial hash tag of each frame's key
  (``verify.tag``, 61 bits per frame, metered as leaked); Bob accepts a decoded frame only
  if its tag matches, so an undetected decoding error is a frame error with probability
  <= attempts x (L+1) / (2^61 - 1) for L 32-bit words.

A frame still failing after ``max_retries`` keeps Bob's bits and is counted in the
returned number of failed frames (reported by ``reconcile``).

``LdpcAlice`` and ``LdpcBob`` are the two parties, each using only what crossed the channel
(two processes run one each); ``ldpc`` runs both in one process.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np

from . import _ldpc_core as core
from . import _ldpc_host as host
from . import _ldpc_q16 as q16
from . import _qc
from .channel import Channel
from .infotheory import h2
from .peer import PeerInputError, peer_array, peer_bits
from .verify import P61, tag

CODE_SEED = 0x5EED1D9C
BASE_COLUMNS = 400      # target number of base-matrix columns nb (the lift Z follows)
LIFT_STEP = 8           # Z is a multiple of this (one AVX vector of float32)
MIN_LIFT = 128          # ... and at least this where the frame still gets 150 base columns:
MIN_BASE_COLUMNS = 150  # shorter frames with more columns of a small lift keep base 4-cycles
MAX_CODES = 16
# Efficiency of the first attempt by design QBER (linear in between, flat outside).  2 %: the
# lowest mean f of short scans on 10^5-bit frames (docs/BENCHMARKS.md, "LDPC codes"; about
# half the frames decode at the first attempt).  5 % and 8 %: traded f for speed, 1.075 in
# place of 1.05 (mean f ~1.065 -> ~1.08 and ~1.054 -> ~1.077, 2.3 -> 1.4 and 1.3 -> 1.0
# attempts, half or less the iterations; docs/BENCHMARKS.md, "LDPC decoder: approximate check
# update"), then 1.08 (80 frames each: 5 % f 1.0820 -> 1.0828, attempts 1.49 -> 1.06,
# iterations 45 -> 35; 8 % f 1.0768 -> 1.0815, iterations 37 -> 30; "LDPC: giving up earlier").
# 1 %: the rate-0.91 code needs f ~1.14 on average, and 1.065 with 7 steps left 3-8 % of the
# frames to the weak key-bit reveals, which failed them; 1.09 with 12 steps: 0 failures in 400
# frames, mean f 1.145-1.150 (1.5 % keeps the 2 % values: f 1.103, 0/200; docs/BENCHMARKS.md,
# "LDPC at 1 %").
F_START = ((0.01, 1.09), (0.015, 1.065), (0.02, 1.065), (0.05, 1.08), (0.08, 1.08))
# Blind steps that disclose punctured bits (each worth a whole bit; key-bit reveals follow) by
# design QBER (nearest integer of the linear interpolation, flat outside): f_start + 0.01 x
# steps covers frames whose error count is > 3 sigma above the mean (sigma of the f a frame
# needs: ~0.026 at 1 %, ~0.019 at 2 %, ~0.011 at 5 %, ~0.008 at 8 %); each step punctured
# costs the first attempt ~0.0015 in f at 2 % (docs/BENCHMARKS.md, LDPC codes).
PUNCTURED_STEPS = ((0.01, 12), (0.015, 7), (0.02, 7), (0.05, 4), (0.08, 4))
# Blind steps disclosed with the syndrome, before Bob's first attempt, by design QBER (nearest
# integer of the linear interpolation, flat outside).  2 %: 6 frames in 40 decoded at the
# first attempt, the failed first attempts were 37 % of all iterations: 1 step up front took
# the iterations from ~79 to ~64 per frame and the rounds from 3.0 to 2.25, for mean f +0.0024
# (1.0896 -> 1.0920, 0/3000 failures; docs/BENCHMARKS.md, "LDPC: host overhead and the first
# step"; 3 %, 40 frames: iterations 60 -> 47, f 1.0803 -> 1.0848).  5-8 % decode mostly at
# the first attempt: none.
PRE_STEPS = ((0.02, 1), (0.05, 0), (0.08, 0))
# Blind step in f by frame length: 0.01 from 10^5 key bits up, growing as 1 / sqrt(k) below, as
# the spread of the f a frame needs does (its error count's): with 0.01 the 30 retries of a
# 10^4-bit frame at 2 % reached f ~1.37 and 11 % of the frames failed; with 0.0316 none of 200,
# mean f 1.22 (docs/BENCHMARKS.md, "LDPC: short frames").
STEP_F, STEP_BITS, STEP_F_MAX = 0.01, 100_000, 0.05
# Design QBERs a measured QBER is clamped to (``design_qber``): the codes decode from ~1 % (400
# frames of 10^5 bits at 1 %: f ~1.147, no failure; 200 at 1.5 %: f 1.103; at 0.5 % 1 frame in 5
# failed) and are checked up to 15 % (docs/postprocess.md, "Reconciliation in the node").
DESIGN_QBER = (0.01, 0.15)
# An attempt also gives up when the trend of its unmet checks says it will not converge
# (``_ldpc_core.decode``'s window and horizon): at the rate their lowest count fell over the
# last TREND_WINDOW iterations, it would still be >= 1 after TREND_HORIZON more.  40 frames each
# of seeds 21 / 31 / 41 / 51 at 2 %: iterations per frame 64.0 -> 52.6, mean f 1.0923 -> 1.0944
# (a failed attempt gives up ~10 iterations earlier; warm retries go on from its messages);
# 5-8 % mostly decode at the first attempt (docs/BENCHMARKS.md, "LDPC: giving up earlier").
TREND_WINDOW, TREND_HORIZON = 10, 150
DECODERS = ("sp", "amin", "q16")
# Decoder "q16": failed attempts of a frame after which its retries run the amin kernel.  The
# fixed-point decoder has an error floor of its own: frame 203 of seed 4 at 5 % (4916 errors),
# which amin decodes at the first attempt, failed all 31 q16 attempts.  At 2 % about half the
# frames fail their first attempt by design of the start, so 1 here gave ~1.4x amin's CPU
# Mbit/s and 2 ~1.7x, the error-floor frame decoding at the third attempt (f 1.102) instead of
# the second (1.092); docs/BENCHMARKS.md, "LDPC: the fixed-point decoder "q16"".
Q16_ATTEMPTS = 2
_CODES: dict[tuple[int, int, int, int], _qc.QCCode] = {}
POOL_BYTES = 64 << 20   # decoder buffers kept per thread between calls (``_Buffers``)
MIN_KEY_BITS = 64       # the shortest frame (and key); ``plannable`` says whether a key has codes


@dataclass(frozen=True)
class FramePlan:
    """Sizes of one frame: k key bits in a QC code of kb + mb base columns lifted by z,
    p punctured and s shortened variables, reveal step delta."""

    k: int
    z: int
    kb: int
    mb: int
    p: int
    s: int
    delta: int

    @property
    def n(self) -> int:
        """Return the number of variables (kb + mb) z = k + p + s."""
        return (self.kb + self.mb) * self.z

    @property
    def m(self) -> int:
        """Return the number of checks mb z."""
        return self.mb * self.z

    @property
    def rate(self) -> float:
        """Return the rate of the first attempt, 1 - (m - p) / k."""
        return 1.0 - (self.m - self.p) / self.k


def start_efficiency(qber: float) -> float:
    """Return the default efficiency f of the first attempt at design QBER ``qber``."""
    q, f = zip(*F_START)
    return float(np.interp(qber, q, f))


def punctured_steps(qber: float) -> int:
    """Return the default number of punctured blind steps at design QBER ``qber``."""
    q, n = zip(*PUNCTURED_STEPS)
    return int(round(float(np.interp(qber, q, n))))


def design_qber(qber: float) -> float:
    """Return the design QBER for a measured one: ``qber`` within ``DESIGN_QBER`` (the codes
    decode from ~1 %: below, the 1 % design leaks more than the key needs)."""
    return min(max(float(qber), DESIGN_QBER[0]), DESIGN_QBER[1])


def step_efficiency(k: int) -> float:
    """Return the default blind step (in f) of a frame of k key bits: STEP_F from STEP_BITS
    up, STEP_F sqrt(STEP_BITS / k) below (at most STEP_F_MAX)."""
    return min(STEP_F * math.sqrt(max(1.0, STEP_BITS / k)), STEP_F_MAX)


def pre_steps(qber: float) -> int:
    """Return the default number of blind steps disclosed with the syndrome at design QBER ``qber``."""
    q, n = zip(*PRE_STEPS)
    return int(math.floor(float(np.interp(qber, q, n)) + 0.5))


def plan_frame(k: int, qber: float, f_start: float | None = None, step_f: float | None = None,
               steps: int | None = None) -> FramePlan:
    """Return the code sizes for k key bits at design QBER ``qber``.

    The first attempt leaks m - p >= ceil(f_start k h(qber)) syndrome bits (rounded up to
    whole circulants); each blind retry discloses delta = ceil(step_f k h(qber)) bits (step_f
    None: from the frame length, ``step_efficiency``);
    p >= steps x delta staircase variables are punctured, s < z information variables
    shortened (zeros known to both) to fill the lifted code.  f_start None: from the
    QBER (``start_efficiency``); steps None: from the QBER (``punctured_steps``), fewer where
    the staircase cannot hold them (keys of a few hundred bits at low QBER; both parties
    compute the same plan).
    """
    if steps is None:
        for fewer in range(punctured_steps(qber), -1, -1):
            try:
                return plan_frame(k, qber, f_start, step_f, fewer)
            except _TooManySteps as exc:
                last = exc
        raise ValueError(f"a frame of {k} key bits at QBER {qber} is too short for these LDPC codes "
                         f"({last}); use Cascade") from None
    f_start = start_efficiency(qber) if f_start is None else f_start
    step_f = step_efficiency(k) if step_f is None else step_f
    if k < MIN_KEY_BITS:
        raise ValueError(f"an LDPC frame needs at least {MIN_KEY_BITS} key bits, got {k}")
    if not 0.0 < qber < 0.5:
        raise ValueError(f"qber must be in (0, 0.5), got {qber}")
    if f_start < 1.0 or step_f <= 0.0 or steps < 0:
        raise ValueError(f"need f_start >= 1, step_f > 0, steps >= 0; got {f_start}, {step_f}, {steps}")
    hq = float(h2(qber))
    leak = int(math.ceil(f_start * k * hq))
    delta = int(math.ceil(step_f * k * hq))
    p_min = steps * delta
    z = LIFT_STEP * max(1, -(-(k + p_min) // (BASE_COLUMNS * LIFT_STEP)),
                        min(MIN_LIFT // LIFT_STEP, k // (MIN_BASE_COLUMNS * LIFT_STEP)))
    mb = max(2, -(-(leak + p_min) // z))
    p = mb * z - leak
    nb = -(-(k + p) // z)
    kb = nb - mb
    if kb < 1 or mb > 0.8 * nb:
        raise ValueError(f"QBER {qber} needs a code of rate {1 - mb / nb:.2f}; LDPC codes here "
                         f"work down to rate 0.2 (QBER ~ 0.2 at f 1.05), use Cascade")
    if p > (mb // 2) * z:
        raise _TooManySteps(f"{steps} blind steps of {delta} bits need {p} punctured staircase bits, "
                         f"a code with {mb} x {z} checks has {(mb // 2) * z}; lower steps or step_f")
    return FramePlan(k, z, kb, mb, p, nb * z - k - p, delta)


class _TooManySteps(ValueError):
    """``plan_frame``: more punctured steps than the staircase of the code can hold."""


def code(plan: FramePlan, seed: int = CODE_SEED) -> _qc.QCCode:
    """Return the public QC code of a frame plan (cached in memory)."""
    key = (plan.kb, plan.mb, plan.z, seed)
    if key not in _CODES:
        if len(_CODES) >= MAX_CODES:
            _CODES.pop(next(iter(_CODES)))
        _CODES[key] = _qc.build(plan.kb, plan.mb, plan.z, seed)
    return _CODES[key]


@dataclass(frozen=True)
class Layout:
    """Where things sit in a frame's code (all from the public frame seed).

    punct: punctured variables in reveal order, each in checks ``pair_a`` and ``pair_b``
    (no check holds two); short: shortened variables (value 0); key_pos: the k key
    variables, key bit i at variable key_pos[i]; rest: checks holding no punctured variable;
    seed: the frame seed; reveal_key: order in which key bits are disclosed once no
    punctured bit is left (drawn when first asked for: most frames never need it).
    """

    punct: np.ndarray
    pair_a: np.ndarray
    pair_b: np.ndarray
    short: np.ndarray
    key_pos: np.ndarray
    rest: np.ndarray
    seed: int

    @cached_property
    def reveal_key(self) -> np.ndarray:
        """Return the order in which key bits are disclosed (indices into the frame's key)."""
        return np.random.default_rng([self.seed, 2]).permutation(self.key_pos.size)


def layout(plan: FramePlan, seed: int, pool: "_Buffers | None" = None,
           held: list | None = None) -> Layout:
    """Return the frame layout: punctured staircase bits of even blocks j <= mb - 2 (checks
    j z + i and (j + 1) z + i, identity circulants), shortened information bits, key bits.

    pool, held: take the large arrays (key_pos, rest and the masks that make them) from
    ``pool`` and append them to ``held``, for the caller to give back when it drops the
    layout (``ldpc`` does, per call); the contents are the same either way."""
    rng = np.random.default_rng([seed, 1])
    blocks = np.arange(0, plan.mb - 1, 2)
    cand = ((plan.kb + blocks)[:, None] * plan.z + np.arange(plan.z)[None, :]).ravel()
    punct = rng.permutation(cand)[:plan.p]
    short = np.sort(rng.choice(plan.kb * plan.z, plan.s, replace=False))
    sizes = [(plan.n, np.bool_), (plan.m, np.bool_), (plan.k + 1, np.int64),
             (plan.m - 2 * plan.p + 1, np.int64)]
    bufs = pool.take(sizes) if pool is not None else [np.empty(n, dtype=t) for n, t in sizes]
    if held is not None:
        held += bufs
    key_pos, rest = bufs[2][:plan.k], bufs[3][:plan.m - 2 * plan.p]
    pair_a, pair_b = host.split(plan.z, plan.kb, punct, short, bufs[0], bufs[1], bufs[2], bufs[3])
    return Layout(punct, pair_a, pair_b, short, key_pos, rest, seed)


class _Buffers(threading.local):
    """Arrays reused from call to call (per thread; at most ``POOL_BYTES`` kept): the few MB
    a frame needs (Bob's decoder state, the layouts' index arrays), freshly allocated, are
    fresh pages whose first touch (a page fault per 4 KiB, ~3.5 us here) cost more CPU than
    filling them (docs/BENCHMARKS.md, "LDPC: host overhead and the first step").  Every
    array taken is filled before use; every array kept is zeroed when given back, so no
    key-derived values (Bob's priors, posteriors, messages) stay in the pool between calls."""

    def __init__(self) -> None:
        self.free: dict[tuple[int, str], list[np.ndarray]] = {}

    def take(self, sizes: list[tuple[int, type]]) -> list[np.ndarray]:
        """Return one array of each (size, dtype) (contents undefined)."""
        out = []
        for n, t in sizes:
            free = self.free.get((n, np.dtype(t).str))
            out.append(free.pop() if free else np.empty(n, dtype=t))
        return out

    def give(self, arrays: list[np.ndarray]) -> None:
        """Keep ``arrays`` for later calls, zeroed, as far as the pool stays within POOL_BYTES."""
        kept = sum(a.nbytes for v in self.free.values() for a in v)
        for a in arrays:
            if kept + a.nbytes <= POOL_BYTES:
                a.fill(0)
                self.free.setdefault((a.size, a.dtype.str), []).append(a)
                kept += a.nbytes


_BUFFERS = _Buffers()


def _edges(plan: FramePlan) -> int:
    """Return the number of edges of a frame plan's lifted code (one message each)."""
    return int(code(plan).cols.size) * plan.z


def syndrome(c: _qc.QCCode, word: np.ndarray) -> np.ndarray:
    """Return H word (uint8, m) of a full word (uint8, n)."""
    return core.syndrome(c.row_ptr, c.cols, c.shifts, c.z, np.ascontiguousarray(word, dtype=np.uint8))


def plannable(n_bits: int, qber: float, **options) -> bool:
    """Return True when a key of ``n_bits`` bits at design QBER ``qber`` can be reconciled with
    ``options`` (every frame has a code: keys of a few hundred bits at low QBER do not)."""
    try:
        Options.of(n_bits, qber, **options).plans(n_bits, qber)
    except ValueError:
        return False
    return True


def _frames(n_bits: int, frame_bits: int) -> list[tuple[int, int]]:
    # near-equal frames of frame_bits .. 2 frame_bits - 1 bits (one frame if n_bits is less):
    # cutting 1.2 x 10^5 bits into two frames of 6 x 10^4 would cost ~0.01-0.02 of f at 2 %
    count = max(1, n_bits // frame_bits)
    edges = np.linspace(0, n_bits, count + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


@dataclass(frozen=True)
class Options:
    """The settings of an LDPC reconciliation (``ldpc``'s keyword arguments but Alice's rng),
    checked by ``Options.of``.  Both parties must use the same, but for ``threads`` (Bob's own:
    Alice's frame header carries the plans, which Bob checks against his)."""

    seed: int = 0
    frame_bits: int = 100_000
    f_start: float | None = None
    step_f: float | None = None
    steps: int | None = None
    max_retries: int = 30
    max_iter: int = 100
    stall: int = 5
    window: int = TREND_WINDOW
    horizon: int = TREND_HORIZON
    warm: bool = True
    decoder: str = "q16"
    pre: int | None = None
    threads: int = 1        # Bob's decoding threads (local: frames decode in parallel; no effect on results)

    @classmethod
    def of(cls, n_bits: int, qber: float, **options) -> "Options":
        """Return the options for an ``n_bits`` key at design QBER ``qber`` (``pre`` None
        resolved); raise TypeError for an unknown option, ValueError naming a bad value."""
        unknown = sorted(set(options) - {f.name for f in fields(cls)})
        if unknown:
            raise TypeError(f"unknown LDPC options {unknown}")
        o = cls(**options)
        if o.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {o.decoder!r}")
        if o.frame_bits < MIN_KEY_BITS:
            raise ValueError(f"frame_bits must be >= {MIN_KEY_BITS}, got {o.frame_bits}")
        if n_bits < MIN_KEY_BITS:
            raise ValueError(f"LDPC reconciliation needs a key of at least {MIN_KEY_BITS} bits, got {n_bits}; "
                             f"use Cascade for short keys")
        if o.threads < 1:
            raise ValueError(f"threads must be >= 1, got {o.threads}")
        if o.window < 0 or (o.window > 0 and o.horizon <= 0):
            raise ValueError(f"need window >= 0 and, with a window, horizon > 0; got {o.window}, {o.horizon}")
        pre = pre_steps(qber) if o.pre is None else o.pre
        if pre < 0 or pre > o.max_retries:
            raise ValueError(f"pre must be in 0..max_retries = {o.max_retries}, got {pre}")
        return replace(o, pre=pre)

    def plans(self, n_bits: int, qber: float) -> tuple[list[tuple[int, int]], list[FramePlan]]:
        """Return the frames (bounds) of an n_bits key and their plans (public, both parties)."""
        bounds = _frames(n_bits, self.frame_bits)
        return bounds, [plan_frame(hi - lo, qber, self.f_start, self.step_f, self.steps) for lo, hi in bounds]


@dataclass
class DecodeStats:
    """What Bob's decoding cost, summed over frames and attempts: decoder iterations, edge
    iterations (iterations x edges of the frame's code) and the CPU seconds of the decoding
    threads inside the kernel (``time.thread_time``; a measurement, left out of ==)."""

    iterations: int = 0
    edge_iterations: int = 0
    cpu_seconds: float = field(default=0.0, compare=False)

    def add(self, other: "DecodeStats") -> None:
        """Add another's figures to these."""
        self.iterations += other.iterations
        self.edge_iterations += other.edge_iterations
        self.cpu_seconds += other.cpu_seconds


def ldpc(alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float, channel: Channel, *,
         rng: np.random.Generator | None = None, stats: DecodeStats | None = None,
         **options) -> tuple[np.ndarray, int]:
    """Reconcile over ``channel``, both parties in one process; return (Bob's corrected key,
    number of failed frames).  The parties are ``LdpcAlice`` and ``LdpcBob``, which two
    processes run one each (the node does).

    options (``Options``): seed: public randomness (frame layouts); frame_bits, f_start,
    step_f, steps: the frame plans (``plan_frame``); max_retries: blind retries after the
    first attempt; max_iter, stall, window, horizon: decoder limits per attempt
    (``_ldpc_core.decode``; window 0: no trend test); warm: a retry continues from the
    failed attempt's messages (else it restarts from the priors); decoder: the check update,
    "amin" (exact sum-product messages to each check's two least reliable inputs, a bounded
    tangent to the others; ``_ldpc_core._scatter_am``), "sp" (exact sum-product) or "q16" (the
    default: the amin structure in int16 fixed point, 16 lanes, AVX2: ``_ldpc_q16``; a frame whose lift Z is
    not a multiple of 16, any frame without AVX2, and a frame's attempts after ``Q16_ATTEMPTS``
    failed ones are decoded by "amin" instead, see ``LdpcBob._decode``); pre: blind
    steps Alice discloses with the syndrome, before Bob's first attempt (None:
    ``pre_steps(qber)``); threads: frames Bob decodes at once (threads of one process; the
    results do not depend on it).  rng: Alice's private randomness for the punctured bits and hash
    points (OS entropy if None).  stats: when given, Bob's ``DecodeStats`` are added to it.
    """
    with LdpcAlice(alice_bits, qber, rng=rng, **options) as alice:
        alice.open(channel)
        with LdpcBob(bob_bits, qber, channel, **options) as bob:
            while bob.attempt(channel):
                alice.reveal(channel)
                bob.learn(channel)
            alice.reveal(channel)
            if stats is not None:
                stats.add(bob.stats)
            return bob.key, bob.failed


class _Party:
    """A party holding arrays of the per-thread pool (``held``); a context manager whose exit
    gives them back (zeroed), after which the object is spent."""

    held: list[np.ndarray]

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Give the pooled arrays back (zeroed)."""
        _BUFFERS.give(self.held)
        self.held = []


class LdpcAlice(_Party):
    """Alice's half of the LDPC reconciliation: ``open`` sends the syndromes, pads, hash tags
    (and the first ``pre`` reveals) in one flight; each ``reveal`` reads Bob's list of failed
    frames and, while frames fail and retries are left, sends their next blind bits.  Returns
    of ``reveal``: True when it sent reveals (Bob will try again), False when done (``failed``
    then holds Bob's count of failed frames).  A context manager, as ``LdpcBob``."""

    def __init__(self, key: np.ndarray, qber: float, *, rng: np.random.Generator | None = None,
                 **options) -> None:
        self.opts = Options.of(key.size, qber, **options)
        self.key, self.qber = key, qber
        self.rng = rng if rng is not None else np.random.default_rng()
        self.bounds, self.plans = self.opts.plans(key.size, qber)
        self.attempt = self.opts.pre
        self.failed = 0
        self.held: list[np.ndarray] = []     # pooled arrays of the layouts, given back by ``close``

    def open(self, channel: Channel) -> None:
        """Send the first flight: frame header, syndromes, pads, hash point, tags, first reveals."""
        plans, key = self.plans, self.key
        frame_seeds = np.random.default_rng(self.opts.seed).integers(0, 2**62, len(plans))
        points = self.rng.integers(0, P61, size=1, dtype=np.uint64)
        leaky, pads, tags, self.state = [], [], [], []     # state: (punctured bits, key, layout)
        for (lo, hi), plan, fs in zip(self.bounds, plans, frame_seeds):
            lay = layout(plan, int(fs), _BUFFERS, self.held)
            secret = self.rng.integers(0, 2, plan.p, dtype=np.uint8)
            s = syndrome(code(plan), host.word(plan.n, lay.key_pos, key[lo:hi], lay.punct, secret))
            part, pad = host.alice_parts(s, lay.rest, lay.pair_a, lay.pair_b)
            leaky.append(part)
            pads.append(pad)
            tags.append(tag(key[lo:hi], points)[0])
            self.state.append((secret, key[lo:hi], lay))
        header = np.array([[p.k, p.z, p.kb, p.mb, p.p, p.s, p.delta] for p in plans], dtype=np.int64)
        channel.send("alice", np.concatenate([[len(plans)], frame_seeds, header.ravel()]).astype(np.int64),
                     tag="ec")
        channel.send("alice", np.concatenate(leaky), leaks_key=True, tag="ec")
        channel.send("alice", np.concatenate(pads), tag="ec")
        channel.send("alice", points, tag="ec")
        channel.send("alice", np.array(tags, dtype=np.uint64), bits=61 * len(tags), leaks_key=True, tag="ec")
        # the first ``pre`` blind steps of every frame, before any attempt (punctured, then key bits)
        self.revealed = _first_reveals(plans, self.opts.pre)
        if self.opts.pre:
            channel.send("alice", np.concatenate([_disclosed(st, 0, r) for st, r in zip(self.state, self.revealed)]),
                         leaks_key=True, tag="ec")

    def reveal(self, channel: Channel) -> bool:
        """Read Bob's failed frames; send the next delta bits of each (punctured first, then
        key bits) and return True, or return False when none failed or no retry is left."""
        plans = self.plans
        failed = np.flatnonzero(peer_bits(channel.recv("alice"), "Bob's failed LDPC frames", len(plans)))
        self.failed = int(failed.size)
        if failed.size == 0 or self.attempt == self.opts.max_retries:
            return False
        self.attempt += 1
        ends = [min(int(self.revealed[i]) + plans[i].delta, plans[i].p + plans[i].k) for i in failed]
        channel.send("alice", np.concatenate([_disclosed(self.state[i], int(self.revealed[i]), end)
                                              for i, end in zip(failed, ends)]),
                     leaks_key=True, tag="ec")
        self.revealed[failed] = ends
        return True


class LdpcBob(_Party):
    """Bob's half of the LDPC reconciliation: reads Alice's first flight (every value checked
    against the frame plans he computes from the key length, QBER and options: see peer.py);
    each ``attempt`` decodes the failing frames and sends the list of those still failing,
    returning True when Alice will reveal more (then ``learn`` reads them).  ``key``: his
    corrected key (frames that failed keep his bits), ``failed``: their number, ``stats``:
    what his attempts cost (``DecodeStats``).  A context
    manager: leaving it gives the decoder buffers back to the per-thread pool (zeroed)."""

    def __init__(self, key: np.ndarray, qber: float, channel: Channel, **options) -> None:
        self.opts = o = Options.of(key.size, qber, **options)
        self.held: list[np.ndarray] = []     # pooled arrays (``_Buffers``), given back by ``close``
        bounds, plans = o.plans(key.size, qber)
        count = len(plans)
        hdr = peer_array(channel.recv("bob"), "Alice's LDPC frame header", size=1 + 8 * count)
        seeds = peer_array(hdr[1:1 + count], "Alice's LDPC frame seeds", lo=0)
        got = [FramePlan(*map(int, row)) for row in hdr[1 + count:].reshape(count, 7)]
        if hdr[0] != count or got != plans:
            raise PeerInputError(f"Alice's LDPC frame plans {hdr[0]} x {got[:1]}... are not the "
                                 f"{count} frames of {key.size} bits at QBER {qber}")
        leaky = peer_bits(channel.recv("bob"), "Alice's LDPC syndromes", sum(p.m - p.p for p in plans))
        pads = peer_bits(channel.recv("bob"), "Alice's LDPC padded syndromes", sum(p.p for p in plans))
        self.points = peer_array(channel.recv("bob"), "Alice's LDPC hash point", kinds="u", size=1, hi=P61 - 1)
        self.tags = peer_array(channel.recv("bob"), "Alice's LDPC frame tags", kinds="u", size=count)
        self.revealed = _first_reveals(plans, o.pre)
        first = (peer_bits(channel.recv("bob"), "Alice's LDPC first reveals", int(self.revealed.sum()))
                 if o.pre else None)
        l0 = np.float32(math.log((1.0 - qber) / qber))
        self.key = np.array(key, dtype=np.uint8)
        self.bounds, self.plans = bounds, plans
        # per frame: syndrome signs, priors, posteriors, messages (float32, filled before use)
        try:
            bufs = _BUFFERS.take([(size, np.float32) for p in plans for size in (p.m, p.n, p.n, _edges(p))])
            self.held += bufs
            self.frames, lo_leak, lo_pad = [], 0, 0
            for i, ((lo, hi), plan, fs) in enumerate(zip(bounds, plans, seeds)):
                ssign, llr, post, msg = bufs[4 * i:4 * i + 4]
                lay = layout(plan, int(fs), _BUFFERS, self.held)
                nl = plan.m - plan.p
                host.bob_frame(lay.key_pos, lay.short, lay.rest, lay.pair_a, lay.pair_b, self.key[lo:hi],
                               leaky[lo_leak:lo_leak + nl], pads[lo_pad:lo_pad + plan.p], l0,
                               core.LLR_KNOWN, ssign, llr)
                lo_leak += nl
                lo_pad += plan.p
                self.frames.append((plan, lay, ssign, llr, (post, msg)))
            self.started = np.zeros(count, dtype=bool)   # a frame's decoder state holds an attempt
            self.q16_failed = np.zeros(count, dtype=np.int64)  # the frame's failed "q16" attempts
            if o.pre:
                ends = np.cumsum(self.revealed)
                for i in range(count):
                    _learn(self.frames[i], False, 0, first[ends[i] - self.revealed[i]:ends[i]])
        except BaseException:
            self.close()
            raise
        self.limits = (o.max_iter, o.stall, o.decoder != "sp", o.window, o.horizon)
        self.pending = list(range(count))     # frames not decoded yet
        self.attempts = o.pre
        self.stats = DecodeStats()

    def attempt(self, channel: Channel) -> bool:
        """Decode every failing frame once, send which still fail; return True when Alice
        will reveal more bits (frames fail and retries are left)."""
        still = []
        workers = min(self.opts.threads, len(self.pending))
        if workers > 1:     # frames are independent: the same results in any order
            with ThreadPoolExecutor(workers) as pool:
                results = list(pool.map(self._decode, self.pending))
        else:
            results = [self._decode(i) for i in self.pending]
        for i, (converged, cost) in zip(self.pending, results):
            self.stats.add(cost)
            lay, post = self.frames[i][1], self.frames[i][4][0]
            lo, hi = self.bounds[i]
            guess = host.hard(post, lay.key_pos)
            if converged and tag(guess, self.points)[0] == self.tags[i]:
                self.key[lo:hi] = guess
            else:
                still.append(i)
        answer = np.zeros(len(self.frames), dtype=bool)
        answer[still] = True
        channel.send("bob", answer, tag="ec")
        self.pending = still
        if not still or self.attempts == self.opts.max_retries:
            return False
        self.attempts += 1
        return True

    @property
    def failed(self) -> int:
        """Return the number of frames not decoded (yet)."""
        return len(self.pending)

    def _decode(self, i: int) -> tuple[bool, DecodeStats]:
        """Run one decoding attempt on frame i (its own buffers; the kernel releases the GIL);
        return whether it converged and what it cost.  Decoder "q16" needs a lift Z that is a
        multiple of 16 and AVX2 (``_ldpc_q16``): a frame with another Z, or any frame where numba
        does not compile for AVX2, is decoded by the "amin" kernel; so are a frame's attempts
        after ``Q16_ATTEMPTS`` failed "q16" attempts (warm, from its state): the fixed-point
        decoder has an error floor of its own (one frame in 3000 at 5 %, which "amin" decodes at
        the first attempt, failed all 31 "q16" attempts)."""
        plan, lay, ssign, llr, (post, msg) = self.frames[i]
        c = code(plan)
        if not self.started[i] or not self.opts.warm:
            np.copyto(post, llr)
            msg.fill(0.0)
            self.started[i] = True
        t0 = time.thread_time()
        max_iter, stall, _, window, horizon = self.limits
        if (self.opts.decoder == "q16" and c.z % q16.W == 0 and q16.AVX2
                and self.q16_failed[i] < Q16_ATTEMPTS):
            its, converged = q16.decode(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, max_iter, stall,
                                        window, horizon)
            self.q16_failed[i] += not converged
        else:   # "q16" on a lift Z not a multiple of 16, without AVX2 or after failed attempts: "amin"
            its, converged = core.decode(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, *self.limits)
        return converged, DecodeStats(int(its), int(its) * int(c.cols.size) * int(c.z), time.thread_time() - t0)

    def learn(self, channel: Channel) -> None:
        """Read Alice's reveals for the failing frames and set their priors (and posteriors)."""
        plans = self.plans
        takes = [min(plans[i].delta, plans[i].p + plans[i].k - int(self.revealed[i])) for i in self.pending]
        got = peer_bits(channel.recv("bob"), "Alice's LDPC reveals", sum(takes))
        at = 0
        for i, take in zip(self.pending, takes):
            r = int(self.revealed[i])
            _learn(self.frames[i], bool(self.started[i]), r, got[at:at + take])
            at += take
            self.revealed[i] = r + take


def _first_reveals(plans: list[FramePlan], pre: int) -> np.ndarray:
    """Return the blind positions of each frame disclosed with the syndrome (``pre`` steps)."""
    return np.array([min(pre * p.delta, p.p + p.k) for p in plans], dtype=np.int64)


def _disclosed(a_state, r: int, end: int) -> np.ndarray:
    """Return (Alice) the values of a frame's blind positions r..end-1: its punctured bits in
    layout order, then its key bits in ``Layout.reveal_key`` order (bool)."""
    secret, key, lay = a_state
    values = secret[r:end]
    if end > secret.size:
        values = np.concatenate([values, key[lay.reveal_key[max(r - secret.size, 0):end - secret.size]]])
    return values.astype(bool)


def _learn(frame, started: bool, r: int, vals: np.ndarray) -> None:
    """Set (Bob) the priors of a frame's blind positions r..r+len(vals)-1 to the disclosed
    ``vals`` (known bits); with a decoder state (``started``) its posteriors follow."""
    plan, lay, ssign, llr, (post, msg) = frame
    end = r + vals.size
    pos = lay.punct[r:end]
    if end > plan.p:
        pos = np.concatenate([pos, lay.key_pos[lay.reveal_key[max(r - plan.p, 0):end - plan.p]]])
    known = np.where(vals == 0, core.LLR_KNOWN, -core.LLR_KNOWN).astype(np.float32)
    if started:
        post[pos] += known - llr[pos]
    llr[pos] = known
