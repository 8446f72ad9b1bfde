"""Numba helpers of the LDPC reconciliation outside the decoder: frame layouts, Alice's
syndrome parts, Bob's priors and syndrome signs, hard decisions.

Each replaces a few numpy passes (masks, ``flatnonzero``, fancy-index stores, ``where``)
over a frame's n ~ 10^5 variables by one loop, with the same results bit for bit; the
callers are in ``ldpc.py`` (docs/postprocess.md, "LDPC"; the cost per frame:
docs/BENCHMARKS.md, "LDPC: host overhead and the first step").
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def _nonzero(x):
    # 1 if the uint8 (or bool) x is not 0, else 0, without a comparison: LLVM turned
    # x != 0 into a branch here, mispredicted on random bits (~4 ns a bit, 6x the loop)
    return (np.int32(x) + np.int32(255)) >> np.int32(8)


@njit(cache=True)
def split(z, kb, punct, short, is_key, is_rest, key_pos, rest):
    """Fill ``key_pos`` and ``rest`` of a layout whose punctured staircase variables are
    ``punct`` and shortened information variables ``short`` (distinct, none of them both);
    return (pair_a, pair_b).  key_pos (int64, k + 1): the k variables that are neither, in
    increasing order; pair_a, pair_b: each punctured variable's two checks (block
    j = punct // z - kb, lane i: checks j z + i and (j + 1) z + i); rest (int64, m - 2 p + 1):
    the checks holding no punctured variable, in increasing order (the last entry of each
    is scratch).  is_key (bool, n) and is_rest (bool, m) are scratch."""
    is_key[:] = True
    is_rest[:] = True
    pair_a = np.empty(punct.size, dtype=np.int64)
    pair_b = np.empty(punct.size, dtype=np.int64)
    for i in range(punct.size):
        v = punct[i]
        is_key[v] = False
        a = (v // z - kb) * z + v % z
        pair_a[i] = a
        pair_b[i] = a + z
        is_rest[a] = False
        is_rest[a + z] = False
    for i in range(short.size):
        is_key[short[i]] = False
    _indices(is_key, key_pos)
    _indices(is_rest, rest)
    return pair_a, pair_b


@njit(cache=True)
def _indices(mask, out):
    # the indices of the True entries of mask, in increasing order, into out, which has one
    # entry more than their number (each index stored, the position advanced by the mask:
    # no branch on it)
    count = out.size - 1
    k = 0
    for v in range(mask.size):
        out[min(k, count)] = v
        k += np.int64(mask[v])
    if k != count:
        raise ValueError("layout: punctured and shortened variables overlap")


@njit(cache=True)
def word(n, key_pos, key, punct, secret):
    """Return Alice's full word (uint8, n): ``key`` at ``key_pos``, ``secret`` at ``punct``,
    zeros elsewhere (the shortened variables)."""
    w = np.zeros(n, dtype=np.uint8)
    for i in range(key_pos.size):
        w[key_pos[i]] = key[i]
    for i in range(punct.size):
        w[punct[i]] = secret[i]
    return w


@njit(cache=True)
def alice_parts(s, rest, pair_a, pair_b):
    """Return what Alice sends of a syndrome ``s``: (s[rest] followed by s[pair_a] XOR
    s[pair_b], the leaky part; s[pair_a], the pads), both bool."""
    nr = rest.size
    leaky = np.empty(nr + pair_a.size, dtype=np.bool_)
    pads = np.empty(pair_a.size, dtype=np.bool_)
    for i in range(nr):
        leaky[i] = s[rest[i]] != 0
    for i in range(pair_a.size):
        a = s[pair_a[i]]
        leaky[nr + i] = (a ^ s[pair_b[i]]) != 0
        pads[i] = a != 0
    return leaky, pads


@njit(cache=True)
def bob_frame(key_pos, short, rest, pair_a, pair_b, bits, leaky, pads, l0, known, ssign, llr):
    """Fill Bob's syndrome signs ``ssign`` (float32, m) and prior LLRs ``llr`` (float32, n) of
    a frame: the syndrome rebuilt from Alice's ``leaky`` part (s[rest], then s[pair_a] XOR
    s[pair_b]) and ``pads`` (s[pair_a]) as +1 / -1; the priors +-``l0`` on the key bits
    ``bits`` (+ for 0) at ``key_pos``, ``known`` on the shortened variables, 0 elsewhere (the
    punctured).  ``bits``, ``leaky`` and ``pads`` are uint8 or bool (any value but 0 counts
    as 1); rest, pair_a and pair_b cover every check."""
    nr = rest.size
    for i in range(nr):
        ssign[rest[i]] = np.float32(1 - 2 * _nonzero(leaky[i]))
    for i in range(pair_a.size):
        a = _nonzero(pads[i])
        ssign[pair_a[i]] = np.float32(1 - 2 * a)
        ssign[pair_b[i]] = np.float32(1 - 2 * (_nonzero(leaky[nr + i]) ^ a))
    llr[:] = np.float32(0.0)
    for i in range(key_pos.size):
        llr[key_pos[i]] = np.float32(1 - 2 * _nonzero(bits[i])) * l0
    for i in range(short.size):
        llr[short[i]] = known


@njit(cache=True)
def hard(post, key_pos):
    """Return the hard decisions (uint8: 1 where the posterior LLR is < 0) at ``key_pos``."""
    out = np.empty(key_pos.size, dtype=np.uint8)
    for i in range(key_pos.size):
        out[i] = post[key_pos[i]] < 0
    return out
