"""Numba kernels of the LDPC reconciliation: quasi-cyclic syndromes and layered min-sum.

A quasi-cyclic (QC) code is a base matrix of ``mb`` rows and ``nb`` columns lifted by Z:
every base entry (row r, column c, shift s) is a Z x Z circulant joining check r*Z + z to
variable c*Z + (z + s) % Z for z = 0..Z-1.  The kernels take the entries row by row:
``row_ptr`` (mb + 1), ``cols`` and ``shifts`` (one per entry).  For a circulant the Z
variables of the checks z = 0..Z-1 are two contiguous runs, c*Z + s .. c*Z + Z - 1 and
c*Z .. c*Z + s - 1, so every loop below runs over z inside a run with unit stride and
no branches (min1 / min2 / index / sign are per-lane arrays), which LLVM vectorises.

State of the decoder: ``post`` (float32, n) the posterior LLR of every variable, log
P(0) / P(1); ``msg`` (float32, one per entry and lane, entry-major) the check-to-variable
messages.  A fresh decode starts from post = prior LLRs, msg = 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

LLR_KNOWN = np.float32(30.0)    # prior LLR magnitude of a bit Bob knows (shortened or revealed)
X_MAX = np.float32(18.0)                   # |LLR| beyond which tanh(x / 2) is 1 in float32
TINY = np.float32(1e-18)        # floor of tanh(|t| / 2): an input of LLR 0 still divides
LN2 = 0.6931471805599453


@njit(cache=True)
def syndrome(row_ptr, cols, shifts, z_lift, bits):
    """Return H x (uint8, mb * Z) for ``bits`` (uint8, nb * Z)."""
    mb = row_ptr.size - 1
    out = np.zeros(mb * z_lift, dtype=np.uint8)
    for r in range(mb):
        acc = out[r * z_lift:(r + 1) * z_lift]
        for e in range(row_ptr[r], row_ptr[r + 1]):
            c = cols[e] * z_lift
            s = shifts[e]
            n1 = z_lift - s
            a = bits[c + s:c + z_lift]
            for z in range(n1):
                acc[z] ^= a[z]
            b = bits[c:c + s]
            tail = acc[n1:]
            for z in range(s):
                tail[z] ^= b[z]
    return out


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _tanh_half(x):
    # tanh(x / 2) = (1 - e^-x) / (1 + e^-x) for 0 <= x; e^-x = (e^(-x/64))^64, e^-y by
    # its Taylor polynomial on [0, X_MAX / 64] (relative error < 2e-6 after the squarings)
    y = min(x, X_MAX) * np.float32(-1.0 / 64.0)
    e = np.float32(1.0) + y * (np.float32(1.0) + y * (np.float32(1.0 / 2.0) + y * (
        np.float32(1.0 / 6.0) + y * (np.float32(1.0 / 24.0) + y * np.float32(1.0 / 120.0)))))
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    e = e * e
    return (np.float32(1.0) - e) / (np.float32(1.0) + e)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _atanh2(p):
    # 2 atanh(p) = ln w, w = (1 + p) / (1 - p), for 0 <= p < 1, 1 - p >= 2^-24: w is brought
    # into [1, 2) by multiples of 2^-16, 2^-8, 2^-4, 2^-2, 2^-1 (selects, no branches), then
    # ln w = 2 atanh(s), s = (w - 1) / (w + 1) in [0, 1/3], by its odd series to s^9
    one = np.float32(1.0)
    d = max(one - p, np.float32(2.0 ** -24))
    w = (np.float32(2.0) - d) / d
    k = np.float32(0.0)
    c = w >= np.float32(65536.0)
    w = w * (np.float32(2.0 ** -16) if c else one)
    k = k + (np.float32(16.0) if c else np.float32(0.0))
    c = w >= np.float32(256.0)
    w = w * (np.float32(2.0 ** -8) if c else one)
    k = k + (np.float32(8.0) if c else np.float32(0.0))
    c = w >= np.float32(16.0)
    w = w * (np.float32(2.0 ** -4) if c else one)
    k = k + (np.float32(4.0) if c else np.float32(0.0))
    c = w >= np.float32(4.0)
    w = w * (np.float32(0.25) if c else one)
    k = k + (np.float32(2.0) if c else np.float32(0.0))
    c = w >= np.float32(2.0)
    w = w * (np.float32(0.5) if c else one)
    k = k + (one if c else np.float32(0.0))
    s = (w - one) / (w + one)
    s2 = s * s
    ln_w = np.float32(2.0) * s * (one + s2 * (np.float32(1.0 / 3.0) + s2 * (np.float32(1.0 / 5.0) + s2 * (
        np.float32(1.0 / 7.0) + s2 * np.float32(1.0 / 9.0)))))
    return ln_w + k * np.float32(LN2)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _gather(pv, mv, fv, prod, sg):
    # one run of one circulant: t = post - msg; tanh(|t| / 2) kept per edge (at least
    # TINY, so the product of the others is a division) and multiplied per check lane;
    # sign product per check lane
    one = np.float32(1.0)
    for z in range(fv.size):
        t = pv[z] - mv[z]
        th = max(_tanh_half(abs(t)), TINY)
        fv[z] = th
        prod[z] = prod[z] * th
        sg[z] = math.copysign(one, sg[z] * t)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _scatter(pv, mv, fv, prod, sg, ps):
    # one run of one circulant: new message 2 atanh(product of the others' tanh) with the
    # sign of the syndrome times the others' signs, new posterior, sign product of posteriors
    one = np.float32(1.0)
    for z in range(fv.size):
        t = pv[z] - mv[z]
        mag = _atanh2(min(prod[z] / fv[z], one))
        r = math.copysign(mag, sg[z] * t)
        mv[z] = r
        p = t + r
        pv[z] = p
        ps[z] = math.copysign(one, ps[z] * p)


@njit(cache=True)
def hard_ok(row_ptr, cols, shifts, z_lift, ssign, post):
    """Return True when the hard decisions of ``post`` meet the syndrome (``ssign`` = +-1)."""
    bits = (post < 0).astype(np.uint8)
    s = syndrome(row_ptr, cols, shifts, z_lift, bits)
    for i in range(s.size):
        if (s[i] == 1) != (ssign[i] < 0):
            return False
    return True


@njit(cache=True, fastmath=True, error_model="numpy")
def decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall):
    """Run layered sum-product on (``post``, ``msg``) in place; return (iterations, converged).

    ``ssign`` (float32, mb * Z) is +1 where the syndrome bit is 0, -1 where it is 1.  A
    check message is 2 atanh(product over the other inputs of tanh(|t| / 2)) with the
    sign of the syndrome times the other inputs' signs (tanh and atanh by the vectorisable
    approximations above; the product of the others is the row product over the own one).
    Base rows are processed in order, each updating its variables' posteriors at once.
    Stops when an iteration saw every check satisfied by the posteriors it left and the
    full syndrome test agrees, or gives up when the count of such unsatisfied checks has
    made no new low for ``stall`` iterations.
    """
    mb = row_ptr.size - 1
    dmax = 0
    for r in range(mb):
        dmax = max(dmax, row_ptr[r + 1] - row_ptr[r])
    fbuf = np.empty(dmax * z_lift, dtype=np.float32)
    prod = np.empty(z_lift, dtype=np.float32)
    sg = np.empty(z_lift, dtype=np.float32)
    ps = np.empty(z_lift, dtype=np.float32)
    best = mb * z_lift + 1
    best_it = 0
    for it in range(1, max_iter + 1):
        unsat = 0
        for r in range(mb):
            e0 = row_ptr[r]
            d = row_ptr[r + 1] - e0
            srow = ssign[r * z_lift:(r + 1) * z_lift]
            for z in range(z_lift):
                prod[z] = 1.0
                sg[z] = srow[z]
                ps[z] = 1.0
            for j in range(d):
                e = e0 + j
                c = cols[e] * z_lift
                s = shifts[e]
                n1 = z_lift - s
                mrow = msg[e * z_lift:(e + 1) * z_lift]
                frow = fbuf[j * z_lift:(j + 1) * z_lift]
                _gather(post[c + s:c + z_lift], mrow[:n1], frow[:n1], prod[:n1], sg[:n1])
                _gather(post[c:c + s], mrow[n1:], frow[n1:], prod[n1:], sg[n1:])
            for j in range(d):
                e = e0 + j
                c = cols[e] * z_lift
                s = shifts[e]
                n1 = z_lift - s
                mrow = msg[e * z_lift:(e + 1) * z_lift]
                frow = fbuf[j * z_lift:(j + 1) * z_lift]
                _scatter(post[c + s:c + z_lift], mrow[:n1], frow[:n1], prod[:n1], sg[:n1],
                         ps[:n1])
                _scatter(post[c:c + s], mrow[n1:], frow[n1:], prod[n1:], sg[n1:], ps[n1:])
            for z in range(z_lift):
                unsat += 1 if ps[z] * srow[z] < 0 else 0
        if unsat == 0 and hard_ok(row_ptr, cols, shifts, z_lift, ssign, post):
            return it, True
        if unsat < best:
            best, best_it = unsat, it
        elif it - best_it >= stall:
            return it, False
    return max_iter, False
