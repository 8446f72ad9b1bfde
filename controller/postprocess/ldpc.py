"""Blind, rate-adaptive LDPC reconciliation (one-way syndrome plus incremental reveals).

Per frame of k key bits (a key is cut into near-equal frames of at most ``frame_bits``):

* Code: an extended irregular repeat-accumulate code (staircase parity part, information
  variables of the degrees in ``DEGREES``) with m checks and n = k + p variables, built
  from a public seed (``_ldpc_core.build_ira``, ~0.1 s at n = 1e5) and kept in memory.
* Puncturing: p staircase parity variables (odd parity indices, so no two share a check)
  carry Alice's private random bits, not key bits.  Alice sends, for every punctured
  parity j (in checks j and j+1), s_j XOR s_j+1 with the leaky part and s_j apart: s_j is
  one-time padded by the punctured bit, independent of the key and of every other
  message, so only m - p syndrome bits are metered as leaked (``leaks_key=True``) and
  the p pads are not.
* Rate: m - p = ceil(f_start k h(Q)) (the first attempt leaks f_start in efficiency);
  p = steps x delta with delta = ceil(step_f k h(Q)).
* Blind: when Bob's decoding fails (no convergence, or converged to a word whose hash
  differs from Alice's), Alice discloses the values of the next delta punctured bits
  (then, when none is left, of delta key bits), each metered as one leaked bit, and Bob
  decodes again, up to ``max_retries`` times.  Frames are handled together: one flight
  each way per attempt, whatever the number of frames.
* Check: Alice sends with the syndrome a polynomial hash tag of each frame's key
  (``verify.tag``, 61 bits per frame, metered as leaked); Bob accepts a decoded frame only
  if its tag matches, so an undetected decoding error is a frame error with probability
  <= attempts x (L+1) / (2^61 - 1) for L 32-bit words.

A frame still failing after ``max_retries`` keeps Bob's bits and is counted in the
returned number of failed frames (reported by ``reconcile``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import _ldpc_core as core
from .channel import Channel
from .infotheory import h2
from .verify import P61, tag

# Information-variable degree fractions (nodes) of the IRA codes; picked by a scan of
# decoding thresholds at QBER 2 % on 3e4-bit frames (docs/BENCHMARKS.md, LDPC section).
DEGREES = {3: 0.50, 6: 0.30, 20: 0.20}
CODE_SEED = 0x5EED1D9C
MAX_CODES = 16
_CODES: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}


@dataclass(frozen=True)
class FramePlan:
    """Sizes of one frame: key bits k, variables n = k + p, checks m, punctured p, reveal step delta."""

    k: int
    n: int
    m: int
    p: int
    delta: int

    @property
    def rate(self) -> float:
        """Return the mother-code rate 1 - m / n."""
        return 1.0 - self.m / self.n


def plan_frame(k: int, qber: float, f_start: float = 1.04, step_f: float = 0.01,
               steps: int = 14) -> FramePlan:
    """Return the code sizes for k key bits at design QBER ``qber``.

    The first attempt leaks m - p = ceil(f_start k h(qber)) syndrome bits; each blind
    retry discloses delta = ceil(step_f k h(qber)) bits; p = steps x delta punctured bits.
    """
    if k < 64:
        raise ValueError(f"an LDPC frame needs at least 64 key bits, got {k}")
    if not 0.0 < qber < 0.5:
        raise ValueError(f"qber must be in (0, 0.5), got {qber}")
    if f_start < 1.0 or step_f <= 0.0 or steps < 0:
        raise ValueError(f"need f_start >= 1, step_f > 0, steps >= 0; got {f_start}, {step_f}, {steps}")
    hq = float(h2(qber))
    leak = int(math.ceil(f_start * k * hq))
    delta = int(math.ceil(step_f * k * hq))
    p = steps * delta
    m = leak + p
    if 2 * p + 2 > m:
        raise ValueError(f"{steps} blind steps of {delta} bits need more punctured parity bits "
                         f"than a code with {m} checks has; lower steps or step_f")
    n = k + p
    if m > 0.8 * n:
        raise ValueError(f"QBER {qber} needs a code of rate {1 - m / n:.2f}; LDPC codes here "
                         f"work down to rate 0.2 (QBER ~ 0.2 at f 1.05), use Cascade")
    return FramePlan(k, n, m, p, delta)


def code(n: int, m: int, seed: int = CODE_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Return (chk_ptr, chk_var) of the public code with n variables and m checks (cached)."""
    key = (n, m, seed)
    if key not in _CODES:
        if len(_CODES) >= MAX_CODES:
            _CODES.pop(next(iter(_CODES)))
        rng = np.random.default_rng([seed, n, m])
        k_info = n - m
        degs = np.array(sorted(DEGREES))
        counts = np.floor(np.array([DEGREES[d] for d in degs]) * k_info).astype(np.int64)
        counts[0] += k_info - counts.sum()
        info_deg = np.repeat(degs, counts).astype(np.int64)
        rng.shuffle(info_deg)
        _CODES[key] = core.build_ira(m, info_deg, int(rng.integers(0, 2**31)))
    return _CODES[key]


def punctured(plan: FramePlan, seed: int) -> np.ndarray:
    """Return the staircase indices j of the punctured parity bits, in reveal order.

    Odd j with j + 1 < m, so no check holds two punctured bits; variable n - m + j.
    """
    odd = np.arange(1, plan.m - 1, 2)
    return np.random.default_rng([seed, 1]).permutation(odd)[:plan.p]


def _layout(plan: FramePlan, seed: int):
    punct = punctured(plan, seed)
    is_key = np.ones(plan.n, dtype=bool)
    is_key[plan.n - plan.m + punct] = False
    key_pos = np.flatnonzero(is_key)
    reveal_key = np.random.default_rng([seed, 2]).permutation(plan.k)
    rest = np.ones(plan.m, dtype=bool)
    rest[punct] = False
    rest[punct + 1] = False
    return punct, key_pos, reveal_key, np.flatnonzero(rest)


def _frames(n_bits: int, frame_bits: int) -> list[tuple[int, int]]:
    count = -(-n_bits // frame_bits)
    edges = np.linspace(0, n_bits, count + 1).round().astype(int)
    return list(zip(edges[:-1], edges[1:]))


def ldpc(alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float, channel: Channel, *,
         seed: int = 0, frame_bits: int = 100_000, f_start: float = 1.04, step_f: float = 0.01,
         steps: int = 14, max_retries: int = 20, max_iter: int = 200, stall: int = 25,
         warm: bool = False, rng: np.random.Generator | None = None) -> tuple[np.ndarray, int]:
    """Reconcile over ``channel``; return (Bob's corrected key, number of failed frames).

    seed: public randomness (code family and reveal orders).  rng: Alice's private
    randomness for the punctured bits and hash points (OS entropy if None).  max_iter,
    stall: decoder limits per attempt; warm: a retry continues from the failed attempt's
    messages (else it restarts from the priors).
    """
    n_bits = alice_bits.size
    if frame_bits < 64:
        raise ValueError(f"frame_bits must be >= 64, got {frame_bits}")
    if n_bits < 64:
        raise ValueError(f"LDPC reconciliation needs a key of at least 64 bits, got {n_bits}; "
                         f"use Cascade for short keys")
    rng = rng if rng is not None else np.random.default_rng()
    bounds = _frames(n_bits, frame_bits)
    # ---- Alice: plan, syndromes, pads, tags (one flight)
    plans = [plan_frame(hi - lo, qber, f_start, step_f, steps) for lo, hi in bounds]
    frame_seeds = np.random.default_rng(seed).integers(0, 2**62, len(plans))
    points = rng.integers(0, P61, size=1, dtype=np.uint64)
    leaky, pads, tags, a_state = [], [], [], []
    for (lo, hi), plan, fs in zip(bounds, plans, frame_seeds):
        punct, key_pos, reveal_key, rest = _layout(plan, int(fs))
        chk_ptr, chk_var = code(plan.n, plan.m)
        word = np.empty(plan.n, dtype=np.uint8)
        word[key_pos] = alice_bits[lo:hi]
        secret = rng.integers(0, 2, plan.p, dtype=np.uint8)
        word[plan.n - plan.m + punct] = secret
        s = core.syndrome(chk_ptr, chk_var, word)
        leaky += [s[rest], s[punct] ^ s[punct + 1]]
        pads.append(s[punct])
        tags.append(tag(alice_bits[lo:hi], points)[0])
        a_state.append((secret, alice_bits[lo:hi][reveal_key]))
    header = np.array([[p.k, p.n, p.m, p.p, p.delta] for p in plans], dtype=np.int64)
    channel.send("alice", np.concatenate([[len(plans)], frame_seeds, header.ravel()]).astype(np.int64),
                 tag="ec")
    channel.send("alice", np.concatenate(leaky).astype(bool), leaks_key=True, tag="ec")
    channel.send("alice", np.concatenate(pads).astype(bool), tag="ec")
    channel.send("alice", points, tag="ec")
    channel.send("alice", np.array(tags, dtype=np.uint64), bits=61 * len(tags), leaks_key=True, tag="ec")
    # ---- Bob: everything below uses only what came through the channel
    hdr = np.asarray(channel.recv("bob"), dtype=np.int64)
    count = int(hdr[0])
    b_seeds = hdr[1:1 + count]
    b_plans = [FramePlan(*map(int, row)) for row in hdr[1 + count:].reshape(count, 5)]
    b_leaky = np.asarray(channel.recv("bob"), dtype=np.uint8)
    b_pads = np.asarray(channel.recv("bob"), dtype=np.uint8)
    b_points = np.asarray(channel.recv("bob"), dtype=np.uint64)
    b_tags = np.asarray(channel.recv("bob"), dtype=np.uint64)
    l0 = np.float32(math.log((1.0 - qber) / qber))
    out = np.array(bob_bits, dtype=np.uint8)
    ends = np.cumsum([0] + [p.k for p in b_plans])
    if ends[-1] != out.size:
        raise ValueError(f"Alice's frames cover {ends[-1]} bits, Bob holds {out.size}")
    bounds = list(zip(ends[:-1], ends[1:]))
    frames, lo_leak, lo_pad = [], 0, 0
    for (lo, hi), plan, fs in zip(bounds, b_plans, b_seeds):
        punct, key_pos, reveal_key, rest = _layout(plan, int(fs))
        s = np.empty(plan.m, dtype=np.uint8)
        nr = rest.size
        s[rest] = b_leaky[lo_leak:lo_leak + nr]
        pad = b_pads[lo_pad:lo_pad + plan.p]
        s[punct] = pad
        s[punct + 1] = b_leaky[lo_leak + nr:lo_leak + nr + plan.p] ^ pad
        lo_leak += nr + plan.p
        lo_pad += plan.p
        llr = np.zeros(plan.n, dtype=np.float32)
        llr[key_pos] = np.where(out[lo:hi] == 0, l0, -l0)
        frames.append((plan, punct, key_pos, reveal_key, s, llr, [None, None]))
    pending = list(range(count))
    revealed = np.zeros(count, dtype=np.int64)
    for attempt in range(max_retries + 1):
        still = []
        for i in pending:
            plan, punct, key_pos, reveal_key, s, llr, state = frames[i]
            chk_ptr, chk_var = code(plan.n, plan.m)
            if state[0] is None or not warm:
                state[0], state[1] = llr.copy(), np.zeros(chk_var.size, dtype=np.float32)
            bits, _, converged = core.decode_state(chk_ptr, chk_var, s, state[0], state[1], max_iter,
                                                   core.PHI, core.PHI_LOW, stall)
            lo, hi = bounds[i]
            guess = bits[key_pos]
            if converged and tag(guess, b_points)[0] == b_tags[i]:
                out[lo:hi] = guess
            else:
                still.append(i)
        channel.send("bob", np.isin(np.arange(count), still), tag="ec")
        failed = np.flatnonzero(np.asarray(channel.recv("alice")))
        if failed.size == 0 or attempt == max_retries:
            return out, int(failed.size)
        # ---- Alice: the next delta bits of every failed frame (punctured first, then key)
        values = []
        for i in failed:
            secret, key_in_order = a_state[i]
            plan = plans[i]
            r = revealed[i]
            both = np.concatenate([secret, key_in_order])
            values.append(both[r:min(r + plan.delta, both.size)])
        channel.send("alice", np.concatenate(values).astype(bool), leaks_key=True, tag="ec")
        got = np.asarray(channel.recv("bob"), dtype=np.uint8)
        at = 0
        for i in failed:
            plan, punct, key_pos, reveal_key, s, llr, state = frames[i]
            r = int(revealed[i])
            take = min(plan.delta, plan.p + plan.k - r)
            vals = got[at:at + take]
            at += take
            pos = np.concatenate([plan.n - plan.m + punct, key_pos[reveal_key]])[r:r + take]
            known = np.where(vals == 0, core.LLR_KNOWN, -core.LLR_KNOWN).astype(np.float32)
            if state[0] is not None:
                state[0][pos] += known - llr[pos]
            llr[pos] = known
            revealed[i] = r + take
        pending = [int(i) for i in failed]
    raise AssertionError("unreachable")
