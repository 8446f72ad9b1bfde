"""Cascade error reconciliation, Bob driving the bisections, Alice answering parities.

Improvements of Martinez-Mateo, Pacher, Peev, Ciurana, Martin, "Demystifying the
information reconciliation protocol Cascade", QIC 15, 453 (2015):

* block sizes (frames of ORDERED_BELOW bits or more): k1 = 2^round(log2(1/Q)),
  k2 = 2^ceil((log2(1/Q) + 12) / 2), then k = N/2 for every later pass (20 passes in
  all), all capped at N/2;
* sub-block reuse: every parity Alice has disclosed (blocks and bisection halves) is
  kept, and the complementary half of a known node is derived, never asked for;
  cascading back into an earlier pass starts from what is already known;
* the N/2 passes are BICONF checks: Alice discloses the parity of one random subset
  (each bit in with probability 1/2; the subset first, then the rest, both in key order:
  cheap and cache-friendly), and an odd check is bisected and cascaded like any block;
* (standard mode, frames shorter than ORDERED_BELOW) a one-bit query whose bit Bob already
  knows is answered by Bob himself, not sent: a bit he corrected, a one-bit node of another
  pass's tree (asked there, or derived as a sibling), or the left bit of a known two-bit
  node whose right bit is known so (_cascade_core.drop_known).  The corrections stay the
  same; at N = 1e4 it saves 3.7 / 1.0 / 22 / 55 parities per frame at 2 / 1 / 5 / 8 %.
  Longer frames (bisection all at once, tens of thousands of queries a round) skip it: at
  1e6 bits it saved 0.0028 of f at 2 %, but a first timing showed up to twice the CPU time
  per frame (not settled under load), and 2.5 Mbit/s at 1e6 is a target.

Stopping rule (the frame error rate): the checks Bob starts after his last correction
are independent of the errors left, so a nonzero residual pattern passes each with
probability exactly 1/2.  Bob ends only after CHECKS such clean checks; when corrections
during the checks leave fewer, he asks Alice for more (passes after the schedule's, up to
MAX_EXTRA_CHECKS).  A frame ends with errors with probability at most 2^-CHECKS per run of
checks begun with errors left.  (A fixed number of checks is not enough: two small-block
passes leave errors in 44-83 % of frames at N = 1e4 and 1-8 %, and the checks that find
them no longer count.)

Frames shorter than ORDERED_BELOW bits: k1 = 2^floor(log2 1/Q), k2 = 8 k1 (k1 = 2^ceil,
k2 = 2 k1 where that k1 is >= 64 and k1 Q <= SHORT_KQ: 1 % and 2 %), pass 2 read column by
column from pass 1's blocks (no two bits of a pass-1 block in one pass-2 block), and Bob
bisects the odd blocks of the later passes a few at a time (one in 64 of pass 2's blocks,
at least one), cascading each error back before the next blocks start: a block that the
cascade evens costs no parities.  This lowers f by 0.01-0.05 at N = 1e4..1e5
(docs/BENCHMARKS.md) for 2-5x the rounds; longer frames bisect every odd block at once.

Low-round mode: k1 = 2^floor(log2(1/Q)), k2 the power of two nearest 1 / (the error
density pass 1 leaves: 4 k1 at 1, 2, 4, 8 %, 2 k1 at 5-6 %), a third pass of 64 k1, then
every check at once (one stage).  Cascaded searches use syndrome decoding: an odd node of up to s
bits is located in one round by asking its left half and the bit planes of the offsets in
the halves (as many parities as bisection asks, Winnow-style), s chosen each round from
Bob's estimate of the errors left (s x density <= SYNDROME_LOAD, so that three errors in a
node, which give a wrong bit for later passes to undo, stay rare).  Nodes of 512 bits or
more are split four ways per round; pass 2's blocks are bisected a quarter at a time
(frames of ORDERED_BELOW bits or more: a half), half as many when Bob's estimate from pass
1's odd blocks leaves under SPARSE_PASS2 errors per block of pass 2.  The parities of the
last block of every pass after the first follow from the key's parity (pass 1) in both
modes and are never disclosed.

Messages (all through the channel, which meters them): Alice -> Bob the permutation
seed (public randomness) and the block parities of every pass (leak); then rounds
of Bob -> Alice queries (permuted ranges, not secret) and Alice -> Bob parities (leak).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import _cascade_core as core
from .channel import Channel
from .peer import INTS, peer_array, peer_bits

MODES = ("standard", "low-round")
# Bob ends after this many BICONF checks begun after his last correction: a residual error
# pattern passes each with probability exactly 1/2, so a frame ends with errors with
# probability at most (checks runs begun with errors left) x 2^-CHECKS (E[R] x 2^-18,
# E[R] 0.48-1.10 at N = 1e4 and 1-8 %; with 4 checks the failures follow E[R] x 2^-4).  16
# checks save 2 bits per frame (0.0014 of f at 2 %, 1e4) for a bound 4x higher; tried and not
# kept: f <= 1.04 is met with 18 (drop_known), docs/BENCHMARKS.md.
CHECKS = 18
# Checks Bob may ask for beyond the schedule's (Alice refuses passes past them).
MAX_EXTRA_CHECKS = 128
# Nodes at least this large are split four ways per round (see _cascade_core.advance).
WIDE_SPLIT = {"standard": 2**62, "low-round": 512}
# Syndrome decoding (see _cascade_core.advance) locates an odd node of up to s bits in one
# round, s chosen each round so that s times Bob's estimate of the error density left is at
# most this load (three errors in a node, which give a wrong bit, stay rare); 0: never.
SYNDROME_LOAD = {"standard": 0.0, "low-round": 0.1}
# Standard-mode frames shorter than this bisect the blocks of later passes a few at a time
# (at most one in 2^LIMIT_SHIFT of pass 2's blocks): f drops by 0.01-0.05 at N = 1e4..1e5
# for 2-5x the rounds.  On longer frames, bisecting all at once costs < 0.01 in f and keeps
# the rounds (hence the time) down.
ORDERED_BELOW = 2**18
LIMIT_SHIFT = 6
# Standard-mode frames shorter than ORDERED_BELOW take k1 = 2^ceil(log2 1/Q), k2 = 2 k1 when
# k1 Q is at most this and k1 >= 64 (see block_schedule).
SHORT_KQ = 1.3
# Low-round mode on frames shorter than ORDERED_BELOW: one in 2^LOW_LIMIT_SHIFT of pass 2's
# blocks at a time (the syndrome decoding leaves rounds to spare for it).
LOW_LIMIT_SHIFT = 2
# ... and on longer frames one half at a time (all at once cost 0.01-0.02 in f at 10^6)
LOW_LIMIT_SHIFT_LONG = 1
# Low-round mode: a frame whose pass 1 leaves fewer than this many errors per block of pass 2
# (Bob's estimate, from pass 1's odd blocks) bisects pass 2 in twice as many batches: its
# cascade chains are short and leave rounds to spare (about 0.8 at 5 %, 1.05-1.1 at 1, 2, 4,
# 6, 8 %).
SPARSE_PASS2 = 0.9
# Passes Bob accepts in Alice's setup (the schedules here have 20 or 21): he keeps a row of
# every pass, so their number sizes his memory.
MAX_PASSES = 64
# Alice answers a round of queries only if it reads at most this many times (passes x n) key
# positions: a round of Bob's reads each pass's nodes under way once (plus their halves), so
# a larger one was altered on the way and would keep her busy for hours.
QUERY_WORK = 4


def block_schedule(n: int, qber: float, passes: int = 2 + CHECKS, mode: str = "standard") -> list[int]:
    """Return the block size of each pass (bits) for a frame of n bits at error rate qber."""
    q = min(max(qber, 1e-6), 0.25)
    alpha = math.log2(1.0 / q)
    half = max((n + 1) // 2, 1)
    if mode == "low-round":
        # k2: the power of two nearest 1 / (the error density pass 1 leaves), about one
        # error per block of pass 2 (4 k1 at 1, 2, 4, 8 %; 2 k1 at 5-6 %, where k1 Q is
        # 0.8-0.96 and 4 k1 put two errors in a block: long cascade chains, 57-92 rounds);
        # a third pass of 64 k1 before the checks (docs/BENCHMARKS.md, low-round mode);
        # one pass more than ``passes``
        k1 = min(2 ** math.floor(alpha), half)
        left = max(q - (1.0 - (1.0 - 2.0 * q) ** k1) / (2.0 * k1), 1e-12)
        k2 = min(2 ** max(round(math.log2(1.0 / left)), 0), half)
        return [k1, k2, min(64 * k1, half)] + [half] * (passes - 2)
    elif n < ORDERED_BELOW:
        # the paper's k2 leaves only 10-40 blocks in pass 2 at N = 1e4.  With ordered
        # bisection and the interleaved pass 2, measured at N = 1e4 (docs/BENCHMARKS.md,
        # "Cascade, standard mode"): k1 = 2^ceil(alpha), k2 = 2 k1 where k1 Q <= SHORT_KQ
        # and k1 >= 64 (1 %: 128/256, 2 %: 64/128; f 0.003-0.004 lower than 2^floor, 8 k1),
        # else 2^floor(alpha), 8 k1 (5 %: 32/64 was 0.021 worse than 16/128, 8 %: 16/32
        # 0.005 worse than 8/64)
        k1 = 2 ** math.ceil(alpha)
        if k1 * q <= SHORT_KQ and k1 >= 64:
            k2 = 2 * k1
        else:
            k1 = 2 ** math.floor(alpha)
            k2 = 8 * k1
        k1, k2 = min(k1, half), min(k2, half)
    else:
        # 2^round(alpha): measured best of 2^floor / 2^ceil at 1-8 % for N = 1e5..1e6
        # (docs/BENCHMARKS.md, "Key distillation"); the paper's 2^ceil loses at 5-8 %.
        k1 = min(2 ** round(alpha), half)
        k2 = min(2 ** math.ceil((alpha + 12.0) / 2.0), half)
    return [k1, k2] + [half] * (passes - 2)


def bisection_limit(n: int, later: list[int], mode: str = "standard",
                    per_block: float | None = None) -> int:
    """Return how many blocks of a later pass Bob bisects at once (0 = all; see advance).

    ``later``: the block size of pass 2 (empty list: none).  Standard mode: frames shorter
    than ORDERED_BELOW bisect one block in 2^LIMIT_SHIFT of pass 2 at a time (at least one);
    longer frames bisect all of them at once.  Low-round mode: one in 2^LOW_LIMIT_SHIFT
    (2^LOW_LIMIT_SHIFT_LONG from ORDERED_BELOW bits), one in twice as many when
    ``per_block``, the errors expected in a block of pass 2, is below SPARSE_PASS2.
    """
    blocks = (n + later[0] - 1) // later[0] if later else 1
    if mode == "low-round":
        shift = LOW_LIMIT_SHIFT if n < ORDERED_BELOW else LOW_LIMIT_SHIFT_LONG
        if per_block is not None and per_block < SPARSE_PASS2:
            shift += 1
        return max(1, blocks >> shift)
    if n >= ORDERED_BELOW:
        return 0
    return max(1, blocks >> LIMIT_SHIFT)


def stages_for(mode: str, passes: int, first: int = 0, cut: int = 2) -> list[tuple[int, int]]:
    """Return the passes started together, as [first, last) ranges, for a mode: the
    schedule's passes (first = 0) or ``passes`` extra checks from pass ``first`` on.
    Low-round mode: each of the ``cut`` leading passes cut into blocks alone, then every
    check at once."""
    if mode == "standard":
        return [(p, p + 1) for p in range(first, first + passes)]
    if mode == "low-round":
        if first:
            return [(first, first + passes)]
        cut = min(cut, passes)
        return [(p, p + 1) for p in range(cut)] + ([(cut, passes)] if passes > cut else [])
    raise ValueError(f"unknown cascade mode {mode!r}; expected one of {MODES}")


def revealed_blocks(n: int, k: int) -> int:
    """Return how many block parities Alice discloses in a pass (1 for BICONF checks)."""
    nb = (n + k - 1) // k
    return 1 if nb == 2 else nb


def is_check(n: int, k: int) -> bool:
    """Return whether a pass with blocks of k bits is a BICONF check (k >= n/2, k < n): its
    one disclosed block is a random subset (each bit in with probability 1/2), not k bits."""
    return (n + k - 1) // k == 2


def derived_last(p: int, shown: int, whole: bool) -> bool:
    """Return whether the last block parity of pass p (``shown`` blocks known to Bob) is
    derived rather than disclosed: when pass 1 is cut into blocks (``whole``: not a
    BICONF check), its parities give the parity of the whole key, so in every later pass
    cut into blocks the last one is the XOR of that and the others."""
    return whole and p >= 1 and shown >= 2


def _check_sizes(ks: list[int], n: int) -> None:
    """Raise ValueError unless every block size is 1..n and there are 1..MAX_PASSES of them
    (Bob takes them from Alice's unauthenticated setup: they size his caches and rows)."""
    if not ks or min(ks) < 1 or max(ks) > max(n, 1):
        raise ValueError(f"block sizes must be 1..{n} (the key's length), got {ks}")
    if len(ks) > MAX_PASSES:
        raise ValueError(f"at most {MAX_PASSES} passes, got a schedule of {len(ks)}")


def _tree_size(k: int) -> int:
    """Return the cache slots of one block's bisection tree (heap numbering)."""
    return 2 ** (max(int(math.ceil(math.log2(k))), 0) + 1)


@dataclass(frozen=True)
class _Layout:
    """Array geometry shared by both parties: blocks, tree caches, active flags.

    ``k``: the block size of each pass as cut (a check pass: its subset size m);
    ``nrev``: blocks whose parity Alice discloses (a check with an empty subset: none).
    """

    k: np.ndarray
    coff: np.ndarray
    tsz: np.ndarray
    aoff: np.ndarray
    nrev: np.ndarray
    cache_size: int
    blocks: int

    @classmethod
    def of(cls, keff: list[int], shown: list[int]) -> "_Layout":
        k = np.asarray(keff, dtype=np.int64)
        nb = np.asarray(shown, dtype=np.int64)                               # trees kept
        tsz = np.array([_tree_size(x) for x in keff], dtype=np.int64)
        coff = np.concatenate(([0], np.cumsum(nb * tsz)[:-1])).astype(np.int64)
        aoff = np.concatenate(([0], np.cumsum(nb)[:-1])).astype(np.int64)
        return cls(k, coff, tsz, aoff, nb, int(np.sum(nb * tsz)), int(np.sum(nb)))


def _pass_seed(seed: int, p: int) -> np.uint64:
    return np.uint64((seed + 0x632BE59BD9B4E019 * (p + 1)) & (2**64 - 1))


def interleaved(n: int, mode: str) -> bool:
    """Return whether pass 2 reads pass 1's blocks column by column (standard mode, frames
    shorter than ORDERED_BELOW): no two bits of a block of pass 1 share a block of pass 2, so
    a pair of errors that pass 1 left in one block is never hidden from pass 2 as well.
    Measured at N = 1e4 (docs/BENCHMARKS.md): f 0.0012-0.0021 lower (2 %, 64/128: 1.0433
    to 1.0412, 1000 frames; 5 %: 1.0461 to 1.0448, 600 frames).  Both parties must agree on
    it, like on the mode."""
    return mode == "standard" and n < ORDERED_BELOW


def _pass_order(n: int, seed: int, p: int, k: int, perm: np.ndarray, pos: np.ndarray | None,
                after: int = 0) -> tuple[int, int]:
    """Fill perm (and pos, its inverse, unless None) with pass p's order from the shared seed:
    uniform for passes with small blocks, a random-subset-first order for BICONF checks;
    ``after`` = k1 > 0: pass 2 (p = 1) read column by column from pass 1's blocks of k1
    bits (see :func:`interleaved`).
    Return (block size as cut, parities disclosed): a check's block is its subset."""
    s = _pass_seed(seed, p)
    if is_check(n, k):
        m = int(core.random_half_order(n, s, perm, pos if pos is not None else np.empty(n, dtype=np.int32)))
        return (m, 1) if m > 0 else (n, 0)     # empty subset: parity 0, nothing to disclose
    if after and p == 1 and not is_check(n, after):
        perm[:] = core.interleaved_order(core.splitmix_permutation(n, _pass_seed(seed, 0)), after, k, s)
    else:
        perm[:] = core.splitmix_permutation(n, s)
    if pos is not None:
        pos[:] = core.inverse_permutation(perm)
    return k, revealed_blocks(n, k)


def _permutations(n: int, seed: int, ks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Return (perm, pos): every pass's order and its inverse."""
    perm = np.empty((len(ks), n), dtype=np.int32)
    pos = np.empty((len(ks), n), dtype=np.int32)
    for p, k in enumerate(ks):
        _pass_order(n, seed, p, k, perm[p], pos[p])
    return perm, pos


class CascadeAlice:
    """Alice's side: holds her key, answers parity queries; never learns Bob's bits.

    Passes after the schedule's are BICONF checks that Bob may ask for (their subset's
    parity), up to MAX_EXTRA_CHECKS of them; Alice builds their orders when first asked.
    ``interleave`` (pass 2 read from pass 1's blocks) defaults to :func:`interleaved` of
    the key's length and ``mode``, as Bob's does: both parties must agree on it.
    """

    def __init__(self, bits: np.ndarray, ks: list[int], seed: int, mode: str = "standard",
                 interleave: bool | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown cascade mode {mode!r}; expected one of {MODES}")
        self.bits = np.ascontiguousarray(bits, dtype=np.uint8)
        n = self.bits.size
        interleave = interleaved(n, mode) if interleave is None else interleave
        self.ks = list(ks)
        _check_sizes(self.ks, n)
        self.seed = seed
        self.after = self.ks[0] if interleave else 0        # see interleaved()
        self.cap = len(self.ks) + MAX_EXTRA_CHECKS
        # room for the checks Bob may ask for (rows are touched only when built)
        self.px = np.empty((min(len(self.ks) + CHECKS, self.cap), n + 1), dtype=np.uint8)
        self.keff: list[int] = []
        self.shown: list[int] = []
        self._perm = np.empty(n, dtype=np.int32)      # Alice keeps prefix parities only
        for p, k in enumerate(self.ks):
            self._build(p, k)

    def _build(self, p: int, k: int) -> None:
        keff, shown = _pass_order(self.bits.size, self.seed, p, k, self._perm, None, self.after)
        self.px[p] = core.prefix_parity(self.bits, self._perm)
        self.keff.append(keff)
        self.shown.append(shown)

    def _extend(self, passes: int) -> None:
        """Build the orders of the extra check passes up to ``passes`` (exclusive)."""
        have = self.px.shape[0]
        if passes > have:
            px = np.empty((min(max(passes, 2 * have), self.cap), self.px.shape[1]), dtype=np.uint8)
            px[:have] = self.px
            self.px = px
        half = max((self.bits.size + 1) // 2, 1)
        for p in range(len(self.keff), passes):
            self._build(p, half)

    def _check_work(self, q: np.ndarray) -> None:
        """Raise ValueError if answering ``q`` would read more than QUERY_WORK x passes x n
        key positions (a plane query of bit t reads about range / 2^(t+1) of them; see
        core.answer_queries)."""
        work = int(core.query_work(q, self.bits.size))
        limit = QUERY_WORK * max(len(self.keff), 1) * (self.bits.size + 1)
        if work > limit:
            raise ValueError(f"{len(q)} queries would read {work} key positions, more than the "
                             f"{limit} a round can ask (passes {len(self.keff)}, n {self.bits.size})")

    def opening(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the public setup (seed, block sizes) and the block parities Alice
        discloses: every block of every pass but the last block of passes 2.. (see
        :func:`derived_last`), which follows from the key's parity (pass 1's blocks)."""
        n = self.bits.size
        whole = not is_check(n, self.ks[0])
        tops = [core.block_parities(self.px[p], n, self.keff[p])[:self.shown[p] - derived_last(p, self.shown[p], whole)]
                for p in range(len(self.ks))]
        setup = np.array([self.seed] + self.ks, dtype=np.uint64)
        return setup, np.concatenate(tops).astype(bool)

    def answer(self, queries: np.ndarray) -> np.ndarray:
        """Return the parities of queried ranges; queries rows are (pass, lo, hi)."""
        q = np.asarray(queries)
        if q.ndim != 2 or q.shape[1] != 3 or q.dtype.kind not in "iu":
            raise ValueError(f"expected integer query rows (pass, lo, hi), got {q.dtype} {q.shape}")
        q = q.astype(np.int64, copy=False)
        if q.shape[0]:
            top = int(q[:, 0].max())
            if len(self.keff) <= top < self.cap:
                self._extend(top + 1)
            self._check_work(q)
        out = np.empty(len(q), dtype=np.bool_)
        bad = core.answer_queries(self.px[:len(self.keff)], q, out)
        if bad >= 0:
            raise ValueError(f"query {bad} {q[bad].tolist()} is not a range [lo, hi) of a pass "
                             f"(passes {len(self.keff)}, n {self.bits.size}): protocol out of step")
        return out


class CascadeBob:
    """Bob's side: corrects his key by bisection, asking Alice only for unknown parities.

    Bob ends only after ``checks`` BICONF checks started after his last correction (all
    even by then): a residual error pattern that the corrections did not depend on passes
    each with probability exactly 1/2.  When the schedule's checks do not give that many,
    he asks Alice for the parities of new checks (passes after the schedule's).
    ``interleave`` defaults to :func:`interleaved` of the key's length and ``mode``.

    ``observer`` (for measurements, e.g. bench/cascade_fer.py): called as ``observer(bob,
    first, last)`` each time Bob starts the passes [first, last) (one stage), before he
    computes their parities; ``bob.y`` is then his key as it goes into them, ``bob.started[1]``
    his corrections so far and ``bob.check[p]`` whether pass p is a check.  It must not
    change Bob; None (the default) costs one test per stage.
    """

    def __init__(self, bits: np.ndarray, setup: np.ndarray, tops: np.ndarray,
                 mode: str = "standard", limit: int | None = None, checks: int = CHECKS,
                 interleave: bool | None = None,
                 observer: Callable[[CascadeBob, int, int], None] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown cascade mode {mode!r}; expected one of {MODES}")
        if checks < 0:
            raise ValueError(f"checks must be >= 0, got {checks}")
        self.y = np.array(bits, dtype=np.uint8)
        n = self.y.size
        self.n = n
        setup = peer_array(setup, "Alice's Cascade setup (seed, block sizes)", kinds=INTS)
        if setup.size < 2:
            raise ValueError(f"Alice's Cascade setup needs a seed and a block size, got {setup.size} values")
        self.seed = int(setup[0])
        self.ks = [int(k) for k in setup[1:]]
        _check_sizes(self.ks, n)
        interleave = interleaved(n, mode) if interleave is None else interleave
        self.after = self.ks[0] if interleave else 0        # see interleaved()
        passes = len(self.ks)
        self.mode = mode
        self.checks = int(checks)
        self.cap = passes + MAX_EXTRA_CHECKS
        rows = min(passes + self.checks, self.cap)
        self.perm = np.empty((rows, n), dtype=np.int32)
        self.pos = np.empty((rows, n), dtype=np.int32)
        self.fen = np.zeros((rows, n + 1), dtype=np.uint8)
        self.keff: list[int] = []
        self.shown: list[int] = []
        self.check: list[bool] = []
        for p, k in enumerate(self.ks):
            self._order(p, k)
        self.lay = _Layout.of(self.keff, self.shown)
        lay = self.lay
        self.cache = np.zeros(self._cache_room(lay.cache_size), dtype=np.int8)   # see core: 0 = unknown
        tops = peer_bits(tops, "Alice's block parities").astype(np.int8)
        whole = not self.check[0]
        sent = [s - derived_last(p, s, whole) for p, s in enumerate(self.shown)]
        if tops.size != sum(sent):
            raise ValueError(f"expected {sum(sent)} block parities from Alice, got {tops.size}")
        total = int(np.bitwise_xor.reduce(tops[:sent[0]])) if sent[0] else 0   # the key's parity
        at = 0
        for p in range(passes):
            got = tops[at:at + sent[p]]
            if derived_last(p, self.shown[p], whole):
                got = np.append(got, np.int8(total ^ int(np.bitwise_xor.reduce(got))))
            roots = lay.coff[p] + np.arange(self.shown[p]) * lay.tsz[p]
            self.cache[roots] = got + 1
            at += sent[p]
        self.active = np.zeros(lay.blocks, dtype=np.bool_)
        self.load = SYNDROME_LOAD[mode]
        # Bob's key before any correction, for the one-bit lookups (core.drop_known), which only
        # standard-mode frames shorter than ORDERED_BELOW make; None where they are skipped
        self.y0 = self.y.copy() if not self.load and n < ORDERED_BELOW else None
        self.odd_first = 0                              # pass 1's odd blocks (see _expected_errors)
        self.expect = self._expected_errors(tops[:sent[0]]) if self.load else 0.0
        self._size_work()
        self.wl_n = np.zeros(1, dtype=np.int64)
        self.started = np.zeros(2, dtype=np.int64)      # passes started, corrections made
        self.flips_at_start = [-1] * passes
        self.wide = WIDE_SPLIT[mode]
        per_block = None              # low-round: errors expected in a block of pass 2 after pass 1
        if mode == "low-round" and self.load and passes > 1 and not self.check[1]:
            per_block = max(self.expect - self.odd_first, 0.0) * self.keff[1] / n
        self.limit = bisection_limit(n, self.ks[1:2], mode, per_block) if limit is None else int(limit)
        if self.limit < 0:
            raise ValueError(f"bisection limit must be >= 0 (0 = all at once), got {limit}")
        cut = next((p for p in range(passes) if self.check[p]), passes)     # passes before the checks
        self.stages = stages_for(mode, passes, cut=max(cut, 1))
        self._stage = 0
        self._answers = np.zeros(0, dtype=np.bool_)
        self._pending = 0
        self.observer = observer

    def _order(self, p: int, k: int) -> None:
        if p >= self.perm.shape[0]:               # more check passes than room: grow
            rows = min(max(p + 1, 2 * self.perm.shape[0]), self.cap)
            for name, dtype, width in (("perm", np.int32, self.n), ("pos", np.int32, self.n),
                                       ("fen", np.uint8, self.n + 1)):
                old = getattr(self, name)
                new = np.zeros((rows, width), dtype=dtype) if name == "fen" else np.empty((rows, width), dtype)
                new[:old.shape[0]] = old
                setattr(self, name, new)
        keff, shown = _pass_order(self.n, self.seed, p, k, self.perm[p], self.pos[p], self.after)
        self.keff.append(keff)
        self.shown.append(shown)
        self.check.append(is_check(self.n, k))

    def _expected_errors(self, alice_first: np.ndarray) -> float:
        """Return Bob's estimate of the errors in his key from pass 1's odd-block fraction r:
        a block of k bits at error rate q is odd with probability (1 - (1 - 2q)^k) / 2.
        Keeps the count of odd blocks in ``odd_first`` (pass 1 corrects one error in each)."""
        if self.check[0] or alice_first.size == 0:
            return float(self.n) / 4
        k = self.keff[0]
        mine = core.block_parities(core.prefix_parity(self.y, self.perm[0]), self.n, k)
        odd = mine[:alice_first.size] != alice_first
        self.odd_first = int(np.count_nonzero(odd))
        r = min(float(np.mean(odd)), 0.499)
        return self.n * (1.0 - (1.0 - 2.0 * r) ** (1.0 / k)) / 2.0

    def _syndrome_size(self) -> int:
        """Return the largest node syndrome decoding may locate this round (0: none)."""
        if not self.load:
            return 0
        left = max(self.expect - float(self.started[1]), 1.0)
        return min(int(self.load * self.n / left), self.n)

    def _cache_room(self, size: int) -> int:
        """Return a cache length for ``size`` slots with room for the checks Bob may add
        (zeroed pages cost nothing until touched)."""
        return size + self.checks * 2 * _tree_size(max(self.n, 1))

    def _size_work(self) -> None:
        blocks = self.lay.blocks
        self.wl = np.zeros((blocks + 1, core.WL_COLS), dtype=np.int64)
        per_row = max(3, self.n.bit_length() + 1) if self.load else 3    # queries per bisection and round
        self.q_cidx = np.zeros(per_row * (blocks + 1), dtype=np.int64)
        self.q = np.zeros((per_row * (blocks + 1), 3), dtype=np.int32)

    def clean_checks(self) -> int:
        """Return how many started checks began after Bob's last correction."""
        return sum(1 for p, f in enumerate(self.flips_at_start)
                   if self.check[p] and f == self.started[1])

    def _more_checks(self) -> int:
        """Add the check passes still needed; write the queries for their parities and
        return how many (0: none needed, or their subsets were empty)."""
        passes = len(self.keff)
        need = min(self.checks - self.clean_checks(), self.cap - passes)
        if need <= 0:
            return 0
        half = max((self.n + 1) // 2, 1)
        for p in range(passes, passes + need):
            self._order(p, half)
        self.lay = _Layout.of(self.keff, self.shown)
        if self.lay.cache_size > self.cache.size:
            self.cache = np.concatenate((self.cache, np.zeros(self._cache_room(self.lay.cache_size) - self.cache.size, np.int8)))
        self.active = np.zeros(self.lay.blocks, dtype=np.bool_)       # nothing is under way
        self._size_work()
        self.flips_at_start += [-1] * need
        self.stages += stages_for(self.mode, need, passes)
        nq = 0
        for p in range(passes, passes + need):
            if self.shown[p]:
                root = self.lay.coff[p]
                self.cache[root] = -1       # asked
                self.q_cidx[nq] = root
                self.q[nq] = (p, 0, self.keff[p])
                nq += 1
        return nq

    def next_queries(self, answers: np.ndarray | None = None) -> np.ndarray | None:
        """Consume Alice's last answers; return the next queries (int32 rows pass, lo, hi;
        a view valid until the next call) or None when Bob is done."""
        ans = self._answers if answers is None else \
            peer_bits(answers, "Alice's parities").astype(np.bool_)
        if ans.size != self._pending:
            raise ValueError(f"expected {self._pending} parities from Alice, got {ans.size}: "
                             "protocol out of step")
        while True:
            lay = self.lay
            nq = core.advance(ans, self.y, self.perm, self.pos, self.fen, lay.k, self.cache,
                              lay.coff, lay.tsz, lay.nrev, self.active, lay.aoff,
                              self.wl, self.wl_n, self.started, self.q_cidx, self.q,
                              self.wide, self.limit, self._syndrome_size())
            ans = self._answers
            self._pending = 0
            if nq < 0:
                raise ValueError(f"Alice's parities contradict each other: {self.started[1]} "
                                 f"corrections in a key of {self.n} bits")
            if nq and self.y0 is not None:              # see core.drop_known
                nq = int(core.drop_known(self.q, self.q_cidx, nq, self.perm, self.pos, lay.k, self.cache,
                                         lay.coff, lay.tsz, lay.nrev, len(self.keff), self.n, self.y, self.y0))
            if nq:
                self._pending = nq
                return self.q[:nq]        # a view: the channel copies what it sends
            if self.wl_n[0] > 0:
                continue          # ordered bisection: the next blocks' turn, nothing asked yet
            if self._stage == len(self.stages):
                nq = self._more_checks()
                if nq:
                    self._pending = nq
                    return self.q[:nq]
                if self._stage == len(self.stages):
                    return None
            first, last = self.stages[self._stage]
            self._stage += 1
            for p in range(first, last):
                self.flips_at_start[p] = int(self.started[1])
            if self.observer is not None:
                self.observer(self, first, last)
            lay = self.lay
            core.start_passes(first, last, self.y, self.perm, self.fen, lay.k, self.cache,
                              lay.coff, lay.tsz, lay.nrev, self.active,
                              lay.aoff, self.wl, self.wl_n, self.started)


def cascade(alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float, channel: Channel, *,
            seed: int = 0, mode: str = "standard", passes: int = 2 + CHECKS,
            schedule: list[int] | None = None, limit: int | None = None,
            checks: int = CHECKS, interleave: bool | None = None,
            observer: Callable[[CascadeBob, int, int], None] | None = None) -> np.ndarray:
    """Run Cascade between the two keys over ``channel``; return Bob's corrected key.

    ``schedule`` overrides the block sizes (one per pass), ``limit`` how many blocks of
    a later pass are bisected at once (0 = all; default :func:`bisection_limit`),
    ``checks`` how many BICONF checks after the last correction end it (0: the schedule's
    passes only), ``interleave`` whether pass 2 reads pass 1's blocks column by column
    (default :func:`interleaved`), ``observer`` a watcher of Bob's stages (see
    :class:`CascadeBob`; it changes nothing).  Both parties run here in lockstep but exchange data only
    through the channel.
    """
    if alice_bits.shape != bob_bits.shape:
        raise ValueError(f"keys differ in length: {alice_bits.size} vs {bob_bits.size}")
    if mode not in MODES:
        raise ValueError(f"unknown cascade mode {mode!r}; expected one of {MODES}")
    n = alice_bits.size
    ks = list(schedule) if schedule is not None else block_schedule(n, qber, passes, mode)
    if not ks or min(ks) < 1:
        raise ValueError(f"block sizes must be >= 1, got {ks}")
    alice = CascadeAlice(alice_bits, ks, seed & (2**64 - 1), mode, interleave)
    setup, tops = alice.opening()
    channel.send("alice", setup, tag="ec")
    channel.send("alice", tops, leaks_key=True, tag="ec")
    bob = CascadeBob(bob_bits, channel.recv("bob"), channel.recv("bob"), mode, limit, checks, interleave,
                     observer)
    answers = None
    while True:
        queries = bob.next_queries(answers)
        if queries is None:
            break
        # Bob names each range by pass and bounds; on the wire a node id would do, so
        # each query is metered at 32 bits.
        channel.send("bob", queries, bits=32 * len(queries), tag="ec")
        got = channel.recv("alice")
        channel.send("alice", alice.answer(got), leaks_key=True, tag="ec")
        answers = channel.recv("bob")
    return bob.y
