"""Numba kernels of the LDPC reconciliation: code construction, syndromes, layered decoding.

A code is held as a parity-check matrix in compressed rows: ``chk_ptr`` (m + 1) and
``chk_var`` (one entry per edge, the variable of each edge, edges numbered check by check).
The layered decoder needs nothing else: one posterior LLR per variable and one
check-to-variable message per edge, both float32 and updated check by check.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# phi(x) = -ln tanh(x / 2), tabulated at cell midpoints: cells of 1/PHI_SCALE on
# [0, PHI_MAX) and, where phi is steep, cells of 1/PHI_FINE on [0, PHI_SPLIT).  The
# check-node update of sum-product is phi(sum phi(|t|) - phi(|t_e|)); the table caps a
# check message at phi(0.5 / PHI_FINE) = 12.5.
PHI_SCALE = 512
PHI_MAX = 24.0
PHI_FINE = 65536
PHI_SPLIT = 0.125
LLR_KNOWN = 30.0     # prior LLR magnitude of a bit Bob knows (shortened or revealed)


def _phi_tables() -> tuple[np.ndarray, np.ndarray]:
    x = (np.arange(int(PHI_SCALE * PHI_MAX)) + 0.5) / PHI_SCALE
    fine = (np.arange(int(PHI_FINE * PHI_SPLIT)) + 0.5) / PHI_FINE
    return ((-np.log(np.tanh(x / 2.0))).astype(np.float32),
            (-np.log(np.tanh(fine / 2.0))).astype(np.float32))


PHI, PHI_LOW = _phi_tables()


@njit(cache=True)
def build_ira(m, info_deg, seed):
    """Return (chk_ptr, chk_var) of an extended IRA code with m checks.

    ``info_deg[i]`` is the degree of information variable i (variables 0..k-1); variables
    k..k+m-1 form the staircase: parity j joins checks j and j+1 (the last one only
    check m-1).  Information sockets go to checks round-robin after a seeded shuffle
    (check degrees differ by at most one); a socket that would repeat a variable in a
    check is swapped with a random other socket until no check holds a variable twice.
    """
    np.random.seed(seed)
    k = info_deg.size
    ns = 0
    for i in range(k):
        ns += info_deg[i]
    sock = np.empty(ns, dtype=np.int64)
    p = 0
    for i in range(k):
        for _ in range(info_deg[i]):
            sock[p] = i
            p += 1
    for i in range(ns - 1, 0, -1):                     # Fisher-Yates
        j = np.random.randint(0, i + 1)
        sock[i], sock[j] = sock[j], sock[i]
    # socket i sits in check i % m; per check, positions i = c, c + m, c + 2m, ...
    for _ in range(50):
        fixed = True
        for c in range(m):
            for a in range(c, ns, m):
                for b in range(a + m, ns, m):
                    if sock[a] == sock[b]:
                        fixed = False
                        j = np.random.randint(0, ns)
                        sock[b], sock[j] = sock[j], sock[b]
        if fixed:
            break
    deg = np.zeros(m, dtype=np.int64)
    for i in range(ns):
        deg[i % m] += 1
    for c in range(m):
        deg[c] += 1 if c == 0 else 2
    chk_ptr = np.zeros(m + 1, dtype=np.int64)
    for c in range(m):
        chk_ptr[c + 1] = chk_ptr[c] + deg[c]
    chk_var = np.empty(chk_ptr[m], dtype=np.int32)
    fill = chk_ptr[:m].copy()
    for i in range(ns):
        c = i % m
        chk_var[fill[c]] = sock[i]
        fill[c] += 1
    for c in range(m):
        if c > 0:
            chk_var[fill[c]] = k + c - 1
            fill[c] += 1
        chk_var[fill[c]] = k + c
        fill[c] += 1
    return chk_ptr, chk_var


@njit(cache=True)
def syndrome(chk_ptr, chk_var, bits):
    """Return H x as uint8 for ``bits`` (uint8, one per variable)."""
    m = chk_ptr.size - 1
    out = np.empty(m, dtype=np.uint8)
    for c in range(m):
        acc = 0
        for e in range(chk_ptr[c], chk_ptr[c + 1]):
            acc ^= bits[chk_var[e]]
        out[c] = acc
    return out


@njit(cache=True, inline="always")
def _phi(x, phi, phi_low):
    """Return phi(x) for x >= 0 from the two tables."""
    if x < PHI_SPLIT:
        i = int(x * PHI_FINE)
        return phi_low[i if i > 0 else 0]
    i = int(x * PHI_SCALE)
    return phi[i] if i < phi.size else phi[phi.size - 1]


@njit(cache=True)
def decode(chk_ptr, chk_var, synd, llr, max_iter, phi, phi_low, stall=25):
    """Layered sum-product syndrome decoding from ``llr``; return (bits, iterations, converged).

    ``llr`` (float32, one per variable) is log P(bit = 0) / P(bit = 1) of Bob's prior.
    """
    post = llr.astype(np.float32)
    msg = np.zeros(chk_var.size, dtype=np.float32)
    return decode_state(chk_ptr, chk_var, synd, post, msg, max_iter, phi, phi_low, stall)


@njit(cache=True, fastmath=True)
def decode_state(chk_ptr, chk_var, synd, post, msg, max_iter, phi, phi_low, stall):
    """Run layered sum-product on the state (``post`` per variable, ``msg`` per edge, both
    float32, updated in place); return (bits, iterations, converged).

    A fresh state is post = prior LLRs, msg = 0; a blind retry continues from the state
    of the failed attempt after adding the change of the prior to ``post``.  Checks
    are processed in order, each updating the posteriors at once (row-serial schedule, about twice as fast to converge as flooding).  Stops when the hard
    decisions satisfy the syndrome, or gives up when the number of checks whose inputs
    disagree with their syndrome bit has not reached a new low for ``stall`` iterations.
    """
    m = chk_ptr.size - 1
    n = post.size
    bits = np.empty(n, dtype=np.uint8)
    dmax = 0
    for c in range(m):
        dmax = max(dmax, chk_ptr[c + 1] - chk_ptr[c])
    t_loc = np.empty(dmax, dtype=np.float32)
    f_loc = np.empty(dmax, dtype=np.float32)
    best = m + 1
    best_it = 0
    for it in range(1, max_iter + 1):
        unsat = 0
        for c in range(m):
            e0 = chk_ptr[c]
            d = chk_ptr[c + 1] - e0
            tot = np.float32(0.0)
            neg = synd[c]
            for j in range(d):
                t = post[chk_var[e0 + j]] - msg[e0 + j]
                t_loc[j] = t
                f = _phi(abs(t), phi, phi_low)
                f_loc[j] = f
                tot += f
                if t < 0:
                    neg ^= 1
            unsat += neg
            for j in range(d):
                r = _phi(tot - f_loc[j], phi, phi_low)
                t = t_loc[j]
                if (neg ^ (1 if t < 0 else 0)) == 1:
                    r = -r
                msg[e0 + j] = r
                post[chk_var[e0 + j]] = t + r
        for v in range(n):
            bits[v] = 1 if post[v] < 0 else 0
        ok = True
        for c in range(m):
            acc = synd[c]
            for e in range(chk_ptr[c], chk_ptr[c + 1]):
                acc ^= bits[chk_var[e]]
            if acc:
                ok = False
                break
        if ok:
            return bits, it, True
        if unsat < best:
            best, best_it = unsat, it
        elif it - best_it >= stall:
            return bits, it, False
    return bits, max_iter, False
