"""Syndrome-based LDPC reconciliation with rate adaptation by shortening, blind retries.

* Codes: extended irregular repeat-accumulate LDPC codes: a staircase of degree-2
  parity nodes plus information nodes of degree 3 (65 %) and 14 (35 %) joined to the
  checks by random socket matching from a public seed.
* Rate adaptation: Alice and Bob embed the key in a codeword of length n and fill
  ``s`` shortened positions with public random bits (known to both, infinite LLR);
  the mother-code rate is the lowest one in the ladder above the target
  1 - f_start h(Q) ... and ``s`` tunes the effective rate (n - m - s) / (n - s).
* Blind: if Bob's decoder fails, Alice discloses the values of ``reveal`` more key
  bits (metered as leaked) and Bob decodes again, up to ``max_retries`` times.
* Decoder: flooding sum-product on the syndrome, early stop when the syndrome matches.

Leak metered by the channel: the m syndrome bits plus every revealed bit.  No
puncturing: punctured bits would lower the true leak below what the channel sees,
and this module reports only what the channel meters.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .channel import Channel
from .infotheory import h2

# Systematic-part variable degrees (node fractions); the parity part is a staircase of
# degree-2 nodes (extended IRA structure), which keeps degree-2 nodes cycle-free.
INFO_DEGREES = {3: 0.65, 14: 0.35}     # best of a short scan (docs/BENCHMARKS.md, "Key distillation")


def make_code(n: int, rate: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Return a parity-check matrix in CSR+CSC form: (chk_ptr, chk_var, var_ptr, var_edge, m).

    H = [H1 | H2]: H2 is an m x m staircase (check c joins parity nodes c-1 and c), H1 joins
    the n - m information nodes to checks by random socket matching (degrees INFO_DEGREES,
    duplicate edges dropped).  Edges are numbered in check order; ``chk_var[e]`` is the
    variable of edge e and ``var_edge[var_ptr[v]:var_ptr[v+1]]`` lists the edges of v.
    """
    rng = np.random.default_rng(seed)
    m = int(round(n * (1.0 - rate)))
    k = n - m
    degs = np.array(sorted(INFO_DEGREES))
    frac = np.array([INFO_DEGREES[d] for d in degs])
    counts = np.floor(frac * k).astype(int)
    counts[0] += k - counts.sum()
    dv = np.repeat(degs, counts)
    rng.shuffle(dv)
    sockets = np.repeat(np.arange(k), dv)
    rng.shuffle(sockets)
    checks = np.arange(sockets.size) % m
    info = np.unique(checks.astype(np.int64) * n + sockets)
    par_c = np.concatenate([np.arange(m), np.arange(1, m)])
    par_v = np.concatenate([k + np.arange(m), k + np.arange(m - 1)])
    pairs = np.sort(np.concatenate([info, par_c.astype(np.int64) * n + par_v]))
    chk = pairs // n
    var = (pairs % n).astype(np.int64)
    chk_ptr = np.zeros(m + 1, dtype=np.int64)
    np.add.at(chk_ptr, chk + 1, 1)
    chk_ptr = np.cumsum(chk_ptr)
    order = np.argsort(var, kind="stable")
    var_ptr = np.zeros(n + 1, dtype=np.int64)
    np.add.at(var_ptr, var + 1, 1)
    var_ptr = np.cumsum(var_ptr)
    return chk_ptr, var, var_ptr, order.astype(np.int64), m


@njit(cache=True)
def syndrome(chk_ptr, chk_var, bits):
    """Return H x (uint8) for the code in CSR form."""
    m = chk_ptr.size - 1
    out = np.zeros(m, dtype=np.uint8)
    for c in range(m):
        acc = 0
        for e in range(chk_ptr[c], chk_ptr[c + 1]):
            acc ^= bits[chk_var[e]]
        out[c] = acc
    return out


@njit(cache=True)
def decode(chk_ptr, chk_var, var_ptr, var_edge, synd, llr, max_iter):
    """Sum-product syndrome decoding; return (bits, iterations, success)."""
    m = chk_ptr.size - 1
    n = var_ptr.size - 1
    ne = chk_var.size
    v2c = np.empty(ne, dtype=np.float64)
    c2v = np.zeros(ne, dtype=np.float64)
    for e in range(ne):
        v2c[e] = llr[chk_var[e]]
    bits = np.zeros(n, dtype=np.uint8)
    for v in range(n):
        bits[v] = 1 if llr[v] < 0 else 0
    for it in range(1, max_iter + 1):
        for c in range(m):
            prod = 1.0
            zeros = 0
            for e in range(chk_ptr[c], chk_ptr[c + 1]):
                t = math.tanh(0.5 * v2c[e])
                if t == 0.0:
                    zeros += 1
                else:
                    prod *= t
            sgn = -1.0 if synd[c] else 1.0
            for e in range(chk_ptr[c], chk_ptr[c + 1]):
                t = math.tanh(0.5 * v2c[e])
                if t == 0.0:
                    p = prod if zeros == 1 else 0.0
                elif zeros > 0:
                    p = 0.0
                else:
                    p = prod / t
                p = min(max(p, -0.999999999999), 0.999999999999)
                c2v[e] = sgn * 2.0 * math.atanh(p)
        for v in range(n):
            tot = llr[v]
            for i in range(var_ptr[v], var_ptr[v + 1]):
                tot += c2v[var_edge[i]]
            bits[v] = 1 if tot < 0 else 0
            for i in range(var_ptr[v], var_ptr[v + 1]):
                e = var_edge[i]
                x = tot - c2v[e]
                v2c[e] = min(max(x, -50.0), 50.0)
        ok = True
        for c in range(m):
            acc = 0
            for e in range(chk_ptr[c], chk_ptr[c + 1]):
                acc ^= bits[chk_var[e]]
            if acc != synd[c]:
                ok = False
                break
        if ok:
            return bits, it, True
    return bits, max_iter, False


RATES = tuple(round(0.30 + 0.01 * i, 2) for i in range(61))   # 0.30 .. 0.90 mother codes
CODE_SEED = 12345
_CODES: dict[tuple[int, float, int], tuple] = {}


def _code(n: int, rate: float, seed: int):
    key = (n, rate, seed)
    if key not in _CODES:
        _CODES[key] = make_code(n, rate, seed)
    return _CODES[key]


def ldpc(alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float, channel: Channel, *,
         seed: int = 0, frame_bits: int | None = None, f_start: float = 1.10,
         reveal_frac: float = 0.03, max_retries: int = 10, max_iter: int = 60) -> np.ndarray:
    """Reconcile with LDPC syndromes over ``channel``; return Bob's corrected key.

    The key is cut into frames (default 20000 bits); each frame's code length is chosen
    so the key fills it after shortening, at effective rate 1 - f_start h(Q).  Each
    blind retry discloses ``reveal_frac`` x (syndrome length) more key bits.  A frame
    that still fails keeps Bob's best guess (verification will reject the block).
    """
    n = alice_bits.size
    frame_bits = frame_bits or min(n, 20_000)
    out = np.array(bob_bits, dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for start in range(0, n, frame_bits):
        a = alice_bits[start:start + frame_bits]
        b = out[start:start + frame_bits]
        out[start:start + frame_bits] = _frame(a, b, qber, channel, rng, f_start, reveal_frac,
                                               max_retries, max_iter)
    return out


def _frame(a, b, qber, channel, rng, f_start, reveal_frac, max_retries, max_iter):
    k = a.size
    target = 1.0 - f_start * h2(qber)
    best = None
    for rate in RATES:
        if rate < target:
            continue
        n_code = int(math.ceil(k / (1.0 - (rate - target) / (1.0 - target)))) if rate > target else k
        best = (rate, n_code)
        break
    if best is None:
        raise ValueError(f"QBER {qber} needs a code rate above {RATES[-1]}")
    rate, n_code = best
    code_seed = CODE_SEED            # fixed public code family: built once, cached
    chk_ptr, chk_var, var_ptr, var_edge, m = _code(n_code, rate, code_seed)
    # Public setup: code, length, key bits, layout seed (key positions) and the
    # shortened filler bits.
    layout_seed = int(rng.integers(0, 2**62))
    layout = np.random.default_rng(layout_seed).permutation(n_code)
    key_pos, short_pos = layout[:k], layout[k:]
    filler = rng.integers(0, 2, n_code - k, dtype=np.uint8)
    channel.send("alice", np.array([code_seed, n_code, k, layout_seed, round(rate * 100)],
                                   dtype=np.int64), tag="ec")
    channel.send("alice", filler.astype(bool), tag="ec")
    word_a = np.empty(n_code, dtype=np.uint8)
    word_a[key_pos] = a
    word_a[short_pos] = filler
    channel.send("alice", syndrome(chk_ptr, chk_var, word_a).astype(bool), leaks_key=True, tag="ec")
    # Bob's side: everything he uses comes from the channel.
    b_seed, b_n, b_k, b_layout, b_rate = (int(v) for v in channel.recv("bob"))
    got_filler = np.asarray(channel.recv("bob"), dtype=np.uint8)
    synd = np.asarray(channel.recv("bob"), dtype=np.uint8)
    chk_ptr, chk_var, var_ptr, var_edge, m = _code(b_n, round(b_rate / 100, 2), b_seed)
    layout = np.random.default_rng(b_layout).permutation(b_n)
    key_pos, short_pos = layout[:b_k], layout[b_k:]
    big = 50.0
    llr = np.empty(n_code, dtype=np.float64)
    l0 = math.log((1.0 - qber) / qber)
    llr[key_pos] = np.where(b == 0, l0, -l0)
    llr[short_pos] = np.where(got_filler == 0, big, -big)
    order = rng.permutation(k)            # order in which Alice would reveal key bits
    per = max(1, int(math.ceil(reveal_frac * m)))
    revealed = 0
    for attempt in range(max_retries + 1):
        bits, _, ok = decode(chk_ptr, chk_var, var_ptr, var_edge, synd, llr, max_iter)
        channel.send("bob", np.array([ok]), tag="ec")
        channel.recv("alice")
        if ok:
            return bits[key_pos]
        if attempt == max_retries:
            break
        idx = order[revealed:revealed + per]
        revealed += idx.size
        channel.send("bob", idx.astype(np.int32), bits=32 * idx.size, tag="ec")
        asked = np.asarray(channel.recv("alice"), dtype=np.int64)
        channel.send("alice", a[asked].astype(bool), leaks_key=True, tag="ec")
        vals = np.asarray(channel.recv("bob"), dtype=np.uint8)
        llr[key_pos[asked]] = np.where(vals == 0, big, -big)
    return bits[key_pos]
