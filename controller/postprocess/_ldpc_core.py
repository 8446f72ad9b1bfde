"""Numba kernels of the LDPC reconciliation: quasi-cyclic syndromes and layered sum-product.

A quasi-cyclic (QC) code is a base matrix of ``mb`` rows and ``nb`` columns lifted by Z:
every base entry (row r, column c, shift s) is a Z x Z circulant joining check r*Z + z to
variable c*Z + (z + s) % Z for z = 0..Z-1.  The kernels take the entries row by row:
``row_ptr`` (mb + 1), ``cols`` and ``shifts`` (one per entry).  For a circulant the Z
variables of the checks z = 0..Z-1 are two contiguous runs, c*Z + s .. c*Z + Z - 1 and
c*Z .. c*Z + s - 1; the decoder copies them into one rotated buffer of Z lanes (check z at
lane z), so every arithmetic loop runs over the lanes with unit stride and no branches.

The loops live in small non-inlined functions (``_gather``, ``_scatter``, ``_copy``): LLVM
vectorises a loop over several array arguments only behind a run-time overlap check, which
it emits in a small function but not in the large decode loop nest (there the loops stayed
scalar).  exp and ln are float32 bit-level approximations (exponent field plus a short
polynomial) that vectorise to 8 lanes with AVX2.

State of the decoder: ``post`` (float32, n) the posterior LLR of every variable, log
P(0) / P(1); ``msg`` (float32, one per entry and lane, entry-major) the check-to-variable
messages.  A fresh decode starts from post = prior LLRs, msg = 0.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LLR_KNOWN = np.float32(30.0)    # prior LLR magnitude of a bit Bob knows (shortened or revealed)
TINY = np.float32(1e-18)        # floor of 1 - e^-|t| (an input of LLR 0 still divides)
LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453
# 2^f = 1 + f P(f) on (-1, 0]: relative error < 2e-7 (own least-squares fit, weighted for
# relative error)
_E = (0.6931434427617168, 0.24017925387931624, 0.055298132541318185, 0.009209750585689708,
      0.0009475275410969625)
# log2(1 + x) = x P(x) on [sqrt(1/2) - 1, sqrt(2) - 1]: absolute error < 9e-7 (own fit)
_L = (1.4426995484690364, -0.7213615947600772, 0.4804812580083578, -0.3595008384879631,
      0.2975418989050461, -0.2680125499094717, 0.16372138388881957)
E1, E2, E3, E4, E5 = (np.float32(c) for c in _E)
L1, L2, L3, L4, L5, L6, L7 = (np.float32(c) for c in _L)


@intrinsic
def _bits(typingctx, x):
    """The bit pattern of a float32 as an int32."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@intrinsic
def _from_bits(typingctx, x):
    """The float32 of an int32 bit pattern."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _exp_neg(a):
    # e^-a for 0 <= a, float32, relative error < 3e-7: 2^v with v = -a log2 e >= -100 as
    # 2^i (added to the exponent field) times 2^f, i = trunc(v), f = v - i in (-1, 0]
    v = max(a * np.float32(-LOG2E), np.float32(-100.0))
    i = np.int32(v)
    f = v - np.float32(i)
    f2 = f * f
    p = (np.float32(1.0) + f * E1) + f2 * ((E2 + f * E3) + f2 * (E4 + f * E5))
    return _from_bits(_bits(p) + (i << np.int32(23)))


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _ln(w):
    # ln w for a normal float32 w > 0, absolute error < 1e-6: w = 2^k m with m in
    # [sqrt(1/2), sqrt(2)) from the exponent and mantissa fields, ln m = ln 2 log2(1 + x)
    b = _bits(w)
    k = np.float32((b >> np.int32(23)) - np.int32(127))
    m = _from_bits((b & np.int32(0x7FFFFF)) | np.int32(0x3F800000))
    big = m > np.float32(1.4142135623730951)
    m = m * (np.float32(0.5) if big else np.float32(1.0))
    k = k + (np.float32(1.0) if big else np.float32(0.0))
    x = m - np.float32(1.0)
    x2 = x * x
    lg = x * (((L1 + x * L2) + x2 * (L3 + x * L4)) + (x2 * x2) * ((L5 + x * L6) + x2 * L7))
    return (lg + k) * np.float32(LN2)


@njit(cache=True)
def _copy(src, dst):
    for z in range(src.size):
        dst[z] = src[z]


@njit(cache=True, fastmath=True, error_model="numpy")
def _gather(tv, mv, ev, num, den, sg):
    # one circulant, lanes = checks: t = post - msg (kept in tv), e = e^-|t| (kept in ev);
    # tanh(|t| / 2) = (1 - e) / (1 + e), its numerator and denominator multiplied into the
    # per-check products num, den (1 - e at least TINY); sign product per check
    one = np.float32(1.0)
    for z in range(tv.size):
        t = tv[z] - mv[z]
        tv[z] = t
        e = _exp_neg(abs(t))
        ev[z] = e
        num[z] = num[z] * max(one - e, TINY)
        den[z] = den[z] * (one + e)
        sg[z] = math.copysign(one, sg[z] * t)


@njit(cache=True, fastmath=True, error_model="numpy")
def _scatter(tv, mv, ev, num, den, sg, ps):
    # one circulant: the others' tanh product P = (num / (1 - e)) / (den / (1 + e)) = b / a,
    # message 2 atanh(P) = ln((a + b) / (a - b)) (a - b floored at 2^-25 (a + b): |message|
    # <= 17.3) with the sign of the syndrome times the others' signs; new posterior t +
    # message (into tv); sign product of the new posteriors per check
    one = np.float32(1.0)
    for z in range(tv.size):
        t = tv[z]
        e = ev[z]
        a = den[z] * max(one - e, TINY)
        b = num[z] * (one + e)
        hi = a + b
        lo = max(a - b, hi * np.float32(2.0 ** -25))
        r = math.copysign(_ln(hi / lo), sg[z] * t)
        mv[z] = r
        p = t + r
        tv[z] = p
        ps[z] = math.copysign(one, ps[z] * p)


# rows of the per-check state of the approximate update (``st``, float32, one lane per check;
# one 2-d array: LLVM vectorises a loop only behind run-time overlap tests between its array
# arguments, and gives up beyond a few arrays)
R_NUM, R_DEN, R_SG, R_PS, R_E1, R_E2, R_M1, R_M2, R_MALL, R_K = range(10)


@njit(cache=True, fastmath=True, error_model="numpy")
def _gather_am(tv, mv, ev, st):
    # as _gather, and the two largest e per check (its two least reliable inputs)
    one = np.float32(1.0)
    for z in range(tv.size):
        t = tv[z] - mv[z]
        tv[z] = t
        e = _exp_neg(abs(t))
        ev[z] = e
        st[R_NUM, z] = st[R_NUM, z] * max(one - e, TINY)
        st[R_DEN, z] = st[R_DEN, z] * (one + e)
        st[R_SG, z] = math.copysign(one, st[R_SG, z] * t)
        st[R_E2, z] = max(st[R_E2, z], min(st[R_E1, z], e))
        st[R_E1, z] = max(st[R_E1, z], e)


@njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _atanh2(a, b):
    # 2 atanh(b / a) = ln((a + b) / (a - b)) with a - b floored at 2^-25 (a + b), and
    # w = (a + b) / (a - b) itself
    hi = a + b
    w = hi / max(a - b, hi * np.float32(2.0 ** -25))
    return _ln(w), w


@njit(cache=True, fastmath=True, error_model="numpy")
def _row_am(st):
    # per check: the exact messages to its least (M1) and second least (M2) reliable input,
    # the magnitude 2 atanh(P) of the product P of all inputs' tanh (MALL) and its slope
    # K = 2 sinh(MALL) = w - 1 / w against 2 e of an excluded input
    one = np.float32(1.0)
    for z in range(st.shape[1]):
        a = st[R_DEN, z]
        b = st[R_NUM, z]
        x = st[R_E1, z]
        st[R_M1, z], _ = _atanh2(a * max(one - x, TINY), b * (one + x))
        x = st[R_E2, z]
        st[R_M2, z], _ = _atanh2(a * max(one - x, TINY), b * (one + x))
        m, w = _atanh2(a, b)
        st[R_MALL, z] = m
        st[R_K, z] = w - one / w


@njit(cache=True, fastmath=True, error_model="numpy")
def _scatter_am(tv, mv, ev, st):
    # one circulant, approximate check update: the least and second least reliable inputs
    # get their exact messages M1, M2; any other input (e <= e2) gets the tangent
    # MALL + K e of the exact message phi(S - phi_i) in phi_i = ln((1 + e) / (1 - e)) >= 2 e
    # (convex in phi_i: the tangent is below it), capped at M2 (above it)
    one = np.float32(1.0)
    for z in range(tv.size):
        t = tv[z]
        e = ev[z]
        m1 = st[R_M1, z]      # every load unconditional: the selects below vectorise
        m2 = st[R_M2, z]
        mag = min(st[R_MALL, z] + st[R_K, z] * e, m2)
        mag = m2 if e == st[R_E2, z] else mag
        mag = m1 if e == st[R_E1, z] else mag
        r = math.copysign(mag, st[R_SG, z] * t)
        mv[z] = r
        p = t + r
        tv[z] = p
        st[R_PS, z] = math.copysign(one, st[R_PS, z] * p)


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
def decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, approx=False):
    """Run layered sum-product on (``post``, ``msg``) in place; return (iterations, converged).

    ``ssign`` (float32, mb * Z) is +1 where the syndrome bit is 0, -1 where it is 1.  A
    check message is 2 atanh(product over the other inputs of tanh(|t| / 2)) with the
    sign of the syndrome times the other inputs' signs (the product of the others from
    the row's numerator and denominator products, see ``_scatter``; exp and ln by the
    vectorisable approximations above).  Base rows are processed in order, each updating
    its variables' posteriors at once.  Stops when an iteration saw every check satisfied
    by the posteriors it left and the full syndrome test agrees, or gives up when the
    count of such unsatisfied checks has made no new low for ``stall`` iterations.
    """
    mb = row_ptr.size - 1
    dmax = 0
    for r in range(mb):
        dmax = max(dmax, row_ptr[r + 1] - row_ptr[r])
    tbuf = np.empty(dmax * z_lift, dtype=np.float32)
    ebuf = np.empty(dmax * z_lift, dtype=np.float32)
    st = np.empty((10, z_lift), dtype=np.float32)
    num = st[R_NUM]
    den = st[R_DEN]
    sg = st[R_SG]
    ps = st[R_PS]
    e1 = st[R_E1]
    e2 = st[R_E2]
    best = mb * z_lift + 1
    best_it = 0
    for it in range(1, max_iter + 1):
        unsat = 0
        for r in range(mb):
            e0 = row_ptr[r]
            d = row_ptr[r + 1] - e0
            srow = ssign[r * z_lift:(r + 1) * z_lift]
            for z in range(z_lift):
                num[z] = 1.0
                den[z] = 1.0
                sg[z] = srow[z]
                ps[z] = 1.0
                e1[z] = 0.0
                e2[z] = 0.0
            for j in range(d):
                e = e0 + j
                c = cols[e] * z_lift
                s = shifts[e]
                n1 = z_lift - s
                tv = tbuf[j * z_lift:(j + 1) * z_lift]
                _copy(post[c + s:c + z_lift], tv[:n1])
                _copy(post[c:c + s], tv[n1:])
                if approx:
                    _gather_am(tv, msg[e * z_lift:(e + 1) * z_lift], ebuf[j * z_lift:(j + 1) * z_lift],
                               st)
                else:
                    _gather(tv, msg[e * z_lift:(e + 1) * z_lift], ebuf[j * z_lift:(j + 1) * z_lift],
                            num, den, sg)
            if approx:
                _row_am(st)
            for j in range(d):
                e = e0 + j
                c = cols[e] * z_lift
                s = shifts[e]
                n1 = z_lift - s
                tv = tbuf[j * z_lift:(j + 1) * z_lift]
                if approx:
                    _scatter_am(tv, msg[e * z_lift:(e + 1) * z_lift], ebuf[j * z_lift:(j + 1) * z_lift],
                                st)
                else:
                    _scatter(tv, msg[e * z_lift:(e + 1) * z_lift], ebuf[j * z_lift:(j + 1) * z_lift],
                             num, den, sg, ps)
                _copy(tv[:n1], post[c + s:c + z_lift])
                _copy(tv[n1:], post[c:c + s])
            for z in range(z_lift):
                unsat += 1 if ps[z] * srow[z] < 0 else 0
        if unsat == 0 and hard_ok(row_ptr, cols, shifts, z_lift, ssign, post):
            return it, True
        if unsat < best:
            best, best_it = unsat, it
        elif it - best_it >= stall:
            return it, False
    return max_iter, False
