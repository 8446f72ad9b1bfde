"""Numba kernels of the LDPC reconciliation: quasi-cyclic syndromes and layered sum-product.

A quasi-cyclic (QC) code is a base matrix of ``mb`` rows and ``nb`` columns lifted by Z:
every base entry (row r, column c, shift s) is a Z x Z circulant joining check r*Z + z to
variable c*Z + (z + s) % Z for z = 0..Z-1.  The kernels take the entries row by row:
``row_ptr`` (mb + 1), ``cols`` and ``shifts`` (one per entry).  The decoder works on lanes
= the Z checks of a base row, 8 float32 at a time (one AVX2 vector).

Two check updates (``decode``'s ``approx``): exact sum-product (``_gather``, ``_scatter``)
and the approximate update (``_gather_am``, ``_row_am``, ``_scatter_am``).  Their passes are
explicit <8 x float> LLVM IR (numba intrinsics, inlined into one function per base row,
``_layer_sp`` / ``_layer_am``): no calls, array views or copies per circulant, the posterior
read and written in place (a block of 8 checks of a circulant is 8 consecutive variables,
but for the one block where the column wraps), the per-check state in registers across two
circulants.  (Written by hand because LLVM vectorises a numba loop over several arrays only
behind run-time overlap checks, which it did not emit inside the decode loop nest; the
earlier kernels copied each circulant into a rotated buffer and called small non-inlined
functions per circulant.)  exp and ln are float32 bit-level approximations (exponent field
plus a short polynomial, ``_V.exp_neg``, ``_V.ln``).

State of the decoder: ``post`` (float32, n) the posterior LLR of every variable, log
P(0) / P(1); ``msg`` (float32, one per entry and lane, entry-major) the check-to-variable
messages.  A fresh decode starts from post = prior LLRs, msg = 0.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
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


# rows of the per-check state (``st``, float32 (Z / 8, 10, 8): per block of 8 checks its 10
# rows of 8 lanes, one lane per check): products of 1 - e and 1 + e over the inputs
# (tanh(|t| / 2) = (1 - e) / (1 + e), e = e^-|t|), sign products (syndrome times inputs, and
# of the new posteriors), the approximate update's two largest e, its messages to those two,
# MALL and K (``_row_am``)
_ROWS = 10
R_NUM, R_DEN, R_SG, R_PS, R_E1, R_E2, R_M1, R_M2, R_MALL, R_K = range(_ROWS)


# ---- explicit-vector passes (LLVM IR, 8 float32 lanes)
#
# A few circulants of one base row per call, emitted inline into ``_layer_am`` /
# ``_layer_sp`` (no call, no array views, no copies): a loop over blocks of 8 checks with
# <8 x float> loads and stores.  The posterior of check z is post[c Z + (z + s) mod Z]: a
# block of 8 checks reads 8 consecutive posteriors in place, except the one block that wraps
# (s not a multiple of 8), read and written lane by lane.  The arithmetic is that of the
# scalar numba code of commit 49287f9 (its _exp_neg, _ln, _gather, _scatter, _gather_am,
# _row_am, _scatter_am; Python's max and min as numba lowers them), operation for operation
# with the same fast-math flags, so the results are bit for bit those of the per-circulant
# loops these passes replaced (checked on 10^5-bit frames at 2 / 5 / 8 %, see
# docs/BENCHMARKS.md, "LDPC decoder: explicit vector passes").

_F = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_W = 8                                   # lanes per vector (AVX2, float32)
_FV = ir.VectorType(_F, _W)
_IV = ir.VectorType(_I32, _W)
_FAST = ("fast",)


def _cv(x):
    """A float32 vector constant."""
    return ir.Constant(_FV, [ir.Constant(_F, float(np.float32(x)))] * _W)


def _iv(x):
    """An int32 vector constant."""
    return ir.Constant(_IV, [ir.Constant(_I32, x)] * _W)


class _V:
    """Emit fast-math vector float32 operations on one IRBuilder."""

    def __init__(self, builder):
        self.b = builder
        mod = builder.module
        fnty = ir.FunctionType(_FV, [_FV, _FV])
        self._copysign = cgutils.get_or_insert_function(mod, fnty, "llvm.copysign.v8f32")
        self._fabs = cgutils.get_or_insert_function(mod, ir.FunctionType(_FV, [_FV]), "llvm.fabs.v8f32")
        self._maxnum = cgutils.get_or_insert_function(mod, fnty, "llvm.maxnum.v8f32")
        self._minnum = cgutils.get_or_insert_function(mod, fnty, "llvm.minnum.v8f32")

    def add(self, x, y):
        return self.b.fadd(x, y, flags=_FAST)

    def sub(self, x, y):
        return self.b.fsub(x, y, flags=_FAST)

    def mul(self, x, y):
        return self.b.fmul(x, y, flags=_FAST)

    def div(self, x, y):
        return self.b.fdiv(x, y, flags=_FAST)

    def max(self, x, y):
        # Python's max(x, y) as numba lowers it: y if y > x else x
        return self.b.select(self.b.fcmp_ordered(">", y, x, flags=_FAST), y, x)

    def min(self, x, y):
        return self.b.select(self.b.fcmp_ordered("<", y, x, flags=_FAST), y, x)

    def maxnum(self, x, y):
        # max for inputs that are neither NaN nor zeros of both signs (same result as max);
        # not a select, which LLVM turns into a masked store (slow on AMD) when the result
        # overwrites an operand
        return self.b.call(self._maxnum, [x, y], fastmath=_FAST)

    def minnum(self, x, y):
        return self.b.call(self._minnum, [x, y], fastmath=_FAST)

    def eq(self, x, y):
        return self.b.fcmp_ordered("==", x, y, flags=_FAST)

    def copysign(self, x, y):
        return self.b.call(self._copysign, [x, y])

    def abs(self, x):
        return self.b.call(self._fabs, [x])

    def exp_neg(self, a):
        # e^-a for 0 <= a, float32, relative error < 3e-7: 2^v with v = -a log2 e >= -100 as
        # 2^i (added to the exponent field) times 2^f, i = trunc(v), f = v - i in (-1, 0]
        b = self.b
        v = self.max(self.mul(a, _cv(-LOG2E)), _cv(-100.0))
        i = b.fptosi(v, _IV)
        f = self.sub(v, b.sitofp(i, _FV))
        f2 = self.mul(f, f)
        p = self.add(self.add(_cv(1.0), self.mul(f, _cv(E1))),
                     self.mul(f2, self.add(self.add(_cv(E2), self.mul(f, _cv(E3))),
                                           self.mul(f2, self.add(_cv(E4), self.mul(f, _cv(E5)))))))
        shifted = b.shl(i, _iv(23))
        return b.bitcast(b.add(b.bitcast(p, _IV), shifted), _FV)

    def ln(self, w):
        # ln w for a normal float32 w > 0, absolute error < 1e-6: w = 2^k m with m in
        # [sqrt(1/2), sqrt(2)) from the exponent and mantissa fields, ln m = ln 2 log2(1 + x)
        b = self.b
        bits = b.bitcast(w, _IV)
        k = b.sitofp(b.sub(b.ashr(bits, _iv(23)), _iv(127)), _FV)
        m = b.bitcast(b.or_(b.and_(bits, _iv(0x7FFFFF)), _iv(0x3F800000)), _FV)
        big = b.fcmp_ordered(">", m, _cv(1.4142135623730951), flags=_FAST)
        m = self.mul(m, b.select(big, _cv(0.5), _cv(1.0)))
        k = self.add(k, b.select(big, _cv(1.0), _cv(0.0)))
        x = self.sub(m, _cv(1.0))
        x2 = self.mul(x, x)
        lo = self.add(self.add(_cv(L1), self.mul(x, _cv(L2))),
                      self.mul(x2, self.add(_cv(L3), self.mul(x, _cv(L4)))))
        hi = self.add(self.add(_cv(L5), self.mul(x, _cv(L6))), self.mul(x2, _cv(L7)))
        lg = self.mul(x, self.add(lo, self.mul(self.mul(x2, x2), hi)))
        return self.mul(self.add(lg, k), _cv(LN2))

    def atanh2(self, a, b):
        # 2 atanh(b / a) = ln((a + b) / (a - b)) with a - b floored at 2^-25 (a + b), and
        # w = (a + b) / (a - b) itself
        hi = self.add(a, b)
        w = self.div(hi, self.max(self.sub(a, b), self.mul(hi, _cv(2.0 ** -25))))
        return self.ln(w), w


def _lanes(fn):
    # an intrinsic out[i] = fn(x[i]) over float32 arrays of a multiple of 8 elements (tests)
    @intrinsic
    def apply(typingctx, x, out):
        def codegen(context, builder, sig, args):
            xp = _data(context, builder, sig.args[0], args[0])
            op = _data(context, builder, sig.args[1], args[1])
            n = context.make_array(sig.args[0])(context, builder, args[0]).nitems
            v = _V(builder)
            with cgutils.for_range(builder, builder.sdiv(n, ir.Constant(_I64, _W))) as loop:
                i = builder.mul(loop.index, ir.Constant(_I64, _W))
                _vstore(builder, fn(v, _vload(builder, xp, i)), op, i)
            return context.get_dummy_value()
        return types.void(x, out), codegen
    return apply


_exp_neg_lanes = _lanes(lambda v, x: v.exp_neg(x))
_ln_lanes = _lanes(lambda v, x: v.ln(x))


def _data(context, builder, ty, value):
    return context.make_array(ty)(context, builder, value).data


def _vload(builder, base, idx, vt=_FV):
    """The vector of type ``vt`` at base[idx] (element-aligned)."""
    return builder.load(builder.bitcast(builder.gep(base, [idx]), vt.as_pointer()), align=_align(vt))


def _vstore(builder, value, base, idx):
    vt = value.type
    builder.store(value, builder.bitcast(builder.gep(base, [idx]), vt.as_pointer()), align=_align(vt))


def _align(vt):
    # bytes of one element of vector type vt (float32: 4, i16: 2)
    return 4 if isinstance(vt.element, ir.FloatType) else vt.element.width // 8


def _rot_index(builder, col0, a, k, z):
    # col0 + (a + k) mod z for 0 <= a < z, 0 <= k < lanes <= z
    i = builder.add(a, ir.Constant(_I64, k))
    i = builder.select(builder.icmp_signed(">=", i, z), builder.sub(i, z), i)
    return builder.add(col0, i)


def _rot_load(builder, post, col0, a, z, vt=_FV):
    """The vt.count posteriors post[col0 + (a + k) mod z], k = 0..vt.count - 1 (one vector load
    but in the block where the column wraps, read lane by lane)."""
    whole = builder.icmp_signed("<=", builder.add(a, ir.Constant(_I64, vt.count)), z)
    with builder.if_else(whole, likely=True) as (then, other):
        with then:
            v1 = _vload(builder, post, builder.add(col0, a), vt)
            b1 = builder.basic_block
        with other:
            v2 = ir.Constant(vt, ir.Undefined)
            for k in range(vt.count):
                x = builder.load(builder.gep(post, [_rot_index(builder, col0, a, k, z)]))
                v2 = builder.insert_element(v2, x, ir.Constant(_I32, k))
            b2 = builder.basic_block
    phi = builder.phi(vt)
    phi.add_incoming(v1, b1)
    phi.add_incoming(v2, b2)
    return phi


def _rot_store(builder, value, post, col0, a, z):
    """Store ``value`` where ``_rot_load`` read it."""
    lanes = value.type.count
    whole = builder.icmp_signed("<=", builder.add(a, ir.Constant(_I64, lanes)), z)
    with builder.if_else(whole, likely=True) as (then, other):
        with then:
            _vstore(builder, value, post, builder.add(col0, a))
        with other:
            for k in range(lanes):
                x = builder.extract_element(value, ir.Constant(_I32, k))
                builder.store(x, builder.gep(post, [_rot_index(builder, col0, a, k, z)]))


def _circulants(context, builder, sig, args, body):
    # common frame of the passes: (post, msg, ebuf, st, z, offs) with offs a tuple of
    # (col0, s, m0, e0) per circulant (column start c Z, shift, offset of its messages in
    # msg and of its e in ebuf); a loop over the blocks of 8 checks calling
    # body(v, post, msg, ebuf, st, z, lane, circ) with circ a list of (col0, a, m0, e0),
    # a = (lane + s) mod Z the variable of the block's first check in its column
    post_t, msg_t, ebuf_t, st_t = sig.args[:4]
    post_a, msg_a, ebuf_a, st_a, z, offs = args
    ptrs = [_data(context, builder, ty, val)
            for ty, val in zip((post_t, msg_t, ebuf_t, st_t), (post_a, msg_a, ebuf_a, st_a))]
    vals = [builder.extract_value(offs, i) for i in range(sig.args[5].count)]
    v = _V(builder)
    nblk = builder.sdiv(z, ir.Constant(_I64, _W))
    with cgutils.for_range(builder, nblk) as loop:
        lane = builder.mul(loop.index, ir.Constant(_I64, _W))
        circ = []
        for g in range(len(vals) // 4):
            col0, s, m0, e0 = vals[4 * g:4 * g + 4]
            a = builder.add(lane, s)
            a = builder.select(builder.icmp_signed(">=", a, z), builder.sub(a, z), a)
            circ.append((col0, a, m0, e0))
        body(v, *ptrs, z, lane, circ)
    return context.get_dummy_value()


def _row(builder, r, z, lane):
    # index of row r at the block of checks lane..lane + 7 in ``st`` (block-major: the rows of
    # one block of 8 checks together, one base pointer and constant offsets for all rows)
    return builder.add(builder.mul(lane, ir.Constant(_I64, _ROWS)), ir.Constant(_I64, r * _W))


def _offsets_type(offs):
    if not (isinstance(offs, types.UniTuple) and offs.dtype == types.int64 and offs.count % 4 == 0):
        raise TypeError(f"circulant offsets must be a tuple of 4 k int64, got {offs}")


def _gather_body(am):
    # pass 1 on a few circulants of one row, circulant after circulant in each lane:
    # t = post - msg (kept in msg's place until pass 2), e = e^-|t| (into ebuf), the
    # per-check products of 1 - e (at least TINY) and 1 + e and the sign product, with
    # ``am`` also the two largest e (the least reliable inputs); the per-check state stays
    # in registers across the circulants of the call
    def body(v, post_p, msg_p, ebuf_p, st_p, z, lane, circ):
        b = v.b
        one = _cv(1.0)
        kept = (R_NUM, R_DEN, R_SG, R_E1, R_E2) if am else (R_NUM, R_DEN, R_SG)
        rows = [_row(b, r, z, lane) for r in kept]
        state = [_vload(b, st_p, i) for i in rows]
        num, den, sg = state[:3]
        e1, e2 = state[3:] if am else (None, None)
        for col0, a, m0, e0 in circ:
            im = b.add(m0, lane)
            t = v.sub(_rot_load(b, post_p, col0, a, z), _vload(b, msg_p, im))
            _vstore(b, t, msg_p, im)
            e = v.exp_neg(v.abs(t))
            _vstore(b, e, ebuf_p, b.add(e0, lane))
            num = v.mul(num, v.max(v.sub(one, e), _cv(TINY)))
            den = v.mul(den, v.add(one, e))
            sg = v.copysign(one, v.mul(sg, t))
            if am:
                e2 = v.maxnum(e2, v.minnum(e1, e))
                e1 = v.maxnum(e1, e)
        for i, x in zip(rows, (num, den, sg, e1, e2)):
            _vstore(b, x, st_p, i)
    return body


def _row_pass(name, body, doc):
    """Return an intrinsic ``name(post, msg, ebuf, st, z, offs)`` that runs ``body`` (the IR
    of one pass, see _circulants) on the few circulants of one row named by ``offs``."""
    def typer(typingctx, post, msg, ebuf, st, z, offs):
        _offsets_type(offs)

        def codegen(context, builder, sig, args):
            return _circulants(context, builder, sig, args, body)
        return types.void(post, msg, ebuf, st, z, offs), codegen
    typer.__name__ = typer.__qualname__ = name
    typer.__doc__ = doc
    return intrinsic(typer)


def _scatter_with(rows, message):
    """Pass 2 on a few circulants of one row, the message from ``message(v, state, t, e)``
    (state: the per-check rows ``rows``, t the input kept by pass 1, e its e^-|t|): the message
    into msg, the new posterior t + message back into post, and the sign product of the new
    posteriors per check."""
    def body(v, post_p, msg_p, ebuf_p, st_p, z, lane, circ):
        b = v.b
        state = [_vload(b, st_p, _row(b, r, z, lane)) for r in rows]
        ips = _row(b, R_PS, z, lane)
        ps = _vload(b, st_p, ips)
        for col0, a, m0, e0 in circ:
            im = b.add(m0, lane)
            t = _vload(b, msg_p, im)
            e = _vload(b, ebuf_p, b.add(e0, lane))
            r = message(v, state, t, e)
            _vstore(b, r, msg_p, im)
            p = v.add(t, r)
            _rot_store(b, p, post_p, col0, a, z)
            ps = v.copysign(_cv(1.0), v.mul(ps, p))
        _vstore(b, ps, st_p, ips)
    return body


def _sp_message(v, state, t, e):
    """Sum-product: the others' tanh product P = (num / (1 - e)) / (den / (1 + e)) = b / a,
    message 2 atanh(P) = ln((a + b) / (a - b)) (a - b floored at 2^-25 (a + b): |message| <=
    17.3) with the sign of the syndrome times the others' signs."""
    num, den, sg = state
    one = _cv(1.0)
    aa = v.mul(den, v.max(v.sub(one, e), _cv(TINY)))
    return v.copysign(v.atanh2(aa, v.mul(num, v.add(one, e)))[0], v.mul(sg, t))


def _am_message(v, state, t, e):
    """The approximate update: the exact messages to the two least reliable inputs, a
    tangent capped at M2 to the others (``_row_am``)."""
    m1, m2, mall, kk, x1, x2, sg = state
    b = v.b
    mag = v.min(v.add(mall, v.mul(kk, e)), m2)
    mag = b.select(v.eq(e, x2), m2, mag)
    mag = b.select(v.eq(e, x1), m1, mag)
    return v.copysign(mag, v.mul(sg, t))


_scatter_body = _scatter_with((R_NUM, R_DEN, R_SG), _sp_message)
_scatter_am_body = _scatter_with((R_M1, R_M2, R_MALL, R_K, R_E1, R_E2, R_SG), _am_message)


_gather = _row_pass("_gather", _gather_body(False),
                    "Pass 1 of sum-product on a few circulants of one row (``_gather_body``).")
_gather_am = _row_pass("_gather_am", _gather_body(True), "Pass 1 of the approximate update on a "
                       "few circulants of one row (``_gather_body``).")
_scatter = _row_pass("_scatter", _scatter_body, "Pass 2 of sum-product on a few circulants of one "
                     "row (``_scatter_with``, ``_sp_message``).")
_scatter_am = _row_pass("_scatter_am", _scatter_am_body, "Pass 2 of the approximate update on a "
                        "few circulants of one row (``_scatter_with``, ``_am_message``).")


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


@intrinsic
def _row_am(typingctx, st, z):
    """Per check (lanes of ``st``, Z a multiple of 8): the exact messages to its
    least (M1) and second least (M2) reliable input, the magnitude 2 atanh(P) of the
    product P of all inputs' tanh (MALL) and its slope K = 2 sinh(MALL) = w - 1 / w against
    2 e of an excluded input."""
    def codegen(context, builder, sig, args):
        st_p = _data(context, builder, sig.args[0], args[0])
        z = args[1]
        v = _V(builder)
        one = _cv(1.0)
        with cgutils.for_range(builder, builder.sdiv(z, ir.Constant(_I64, _W))) as loop:
            lane = builder.mul(loop.index, ir.Constant(_I64, _W))

            def load(r):
                return _vload(builder, st_p, _row(builder, r, z, lane))

            def store(r, x):
                _vstore(builder, x, st_p, _row(builder, r, z, lane))
            a, b = load(R_DEN), load(R_NUM)
            for rx, rm in ((R_E1, R_M1), (R_E2, R_M2)):
                x = load(rx)
                store(rm, v.atanh2(v.mul(a, v.max(v.sub(one, x), _cv(TINY))), v.mul(b, v.add(one, x)))[0])
            m, w = v.atanh2(a, b)
            store(R_MALL, m)
            store(R_K, v.sub(w, v.div(one, w)))
        return context.get_dummy_value()
    return types.void(st, z), codegen


@intrinsic
def _start(typingctx, st, ssign, off, z):
    """Per check: products 1, sign = syndrome sign ``ssign[off + lane]``, two largest e 0."""
    def codegen(context, builder, sig, args):
        st_p = _data(context, builder, sig.args[0], args[0])
        ss_p = _data(context, builder, sig.args[1], args[1])
        off, z = args[2], args[3]
        with cgutils.for_range(builder, builder.sdiv(z, ir.Constant(_I64, _W))) as loop:
            lane = builder.mul(loop.index, ir.Constant(_I64, _W))
            for r, x in ((R_NUM, _cv(1.0)), (R_DEN, _cv(1.0)), (R_PS, _cv(1.0)), (R_E1, _cv(0.0)),
                         (R_E2, _cv(0.0)), (R_SG, _vload(builder, ss_p, builder.add(off, lane)))):
                _vstore(builder, x, st_p, _row(builder, r, z, lane))
        return context.get_dummy_value()
    return types.void(st, ssign, off, z), codegen


@intrinsic
def _unmet(typingctx, st, ssign, off, z):
    """The number of checks whose new posteriors' sign product (row R_PS) differs from
    the syndrome sign ``ssign[off + lane]``."""
    def codegen(context, builder, sig, args):
        st_p = _data(context, builder, sig.args[0], args[0])
        ss_p = _data(context, builder, sig.args[1], args[1])
        off, z = args[2], args[3]
        v = _V(builder)
        acc = cgutils.alloca_once_value(builder, _iv(0))
        with cgutils.for_range(builder, builder.sdiv(z, ir.Constant(_I64, _W))) as loop:
            lane = builder.mul(loop.index, ir.Constant(_I64, _W))
            prod = v.mul(_vload(builder, st_p, _row(builder, R_PS, z, lane)),
                         _vload(builder, ss_p, builder.add(off, lane)))
            neg = builder.zext(builder.fcmp_ordered("<", prod, _cv(0.0), flags=_FAST), _IV)
            builder.store(builder.add(builder.load(acc), neg), acc)
        total = builder.load(acc)
        out = ir.Constant(_I64, 0)
        for k in range(_W):
            out = builder.add(out, builder.sext(builder.extract_element(total, ir.Constant(_I32, k)), _I64))
        return out
    return types.int64(st, ssign, off, z), codegen


PAIR = 2        # circulants per pass call: the per-check state stays in registers across them


@njit(cache=True, inline="always")
def _offs(cols, shifts, z, e, j):
    # (column start, shift, offset of the messages, offset in the row's e buffer) of entry e,
    # the row's j-th
    return (np.int64(cols[e] * z), np.int64(shifts[e]), np.int64(e * z), np.int64(j * z))


@njit(cache=True, fastmath=True, error_model="numpy")
def _layer_am(row_ptr, cols, shifts, r, ssign, post, msg, ebuf, st):
    """One base row of the approximate update in place; return its checks not met by the
    new posteriors.  ``ebuf`` holds (row degree) x Z floats, ``st`` is (Z / 8, 10, 8)."""
    z = np.int64(st.shape[0] * _W)
    e0 = row_ptr[r]
    d = row_ptr[r + 1] - e0
    _start(st, ssign, r * z, z)
    j = 0
    while j + PAIR <= d:
        _gather_am(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j)
                   + _offs(cols, shifts, z, e0 + j + 1, j + 1))
        j += PAIR
    if j < d:
        _gather_am(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j))
    _row_am(st, z)
    j = 0
    while j + PAIR <= d:
        _scatter_am(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j)
                    + _offs(cols, shifts, z, e0 + j + 1, j + 1))
        j += PAIR
    if j < d:
        _scatter_am(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j))
    return _unmet(st, ssign, r * z, z)


@njit(cache=True, fastmath=True, error_model="numpy")
def _layer_sp(row_ptr, cols, shifts, r, ssign, post, msg, ebuf, st):
    """One base row of sum-product in place, as ``_layer_am``."""
    z = np.int64(st.shape[0] * _W)
    e0 = row_ptr[r]
    d = row_ptr[r + 1] - e0
    _start(st, ssign, r * z, z)
    j = 0
    while j + PAIR <= d:
        _gather(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j)
                + _offs(cols, shifts, z, e0 + j + 1, j + 1))
        j += PAIR
    if j < d:
        _gather(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j))
    j = 0
    while j + PAIR <= d:
        _scatter(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j)
                 + _offs(cols, shifts, z, e0 + j + 1, j + 1))
        j += PAIR
    if j < d:
        _scatter(post, msg, ebuf, st, z, _offs(cols, shifts, z, e0 + j, j))
    return _unmet(st, ssign, r * z, z)


@njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
def decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, approx=False,
           window=0, horizon=0):
    """Run layered sum-product on (``post``, ``msg``) in place; return (iterations, converged).

    ``ssign`` (float32, mb * Z) is +1 where the syndrome bit is 0, -1 where it is 1.  A
    check message is 2 atanh(product over the other inputs of tanh(|t| / 2)) with the
    sign of the syndrome times the other inputs' signs (the product of the others from
    the row's numerator and denominator products, see ``_scatter``; exp and ln by the
    vectorisable approximations above); ``approx``: the approximate update instead
    (``_row_am``, ``_scatter_am``; Z must then be a multiple of 8).  Base rows are
    processed in order, each updating its variables' posteriors at once.  Stops when an
    iteration saw every check satisfied by the posteriors it left and the full syndrome
    test agrees, or gives up when the count of such unsatisfied checks has made no new low
    for ``stall`` iterations, or (``window`` > 0) when its trend says it will not reach zero:
    after iteration i > ``window``, with b(i) the lowest count up to iteration i, when
    b(i) (b(i) / b(i - window))^(horizon / window) >= 1, i.e. at the rate the lowest count
    fell over the last ``window`` iterations it would still be >= 1 after ``horizon`` more.
    """
    if z_lift % _W != 0 or z_lift <= 0:
        raise ValueError("the decoder needs a lift Z that is a positive multiple of 8")
    mb = row_ptr.size - 1
    dmax = 0
    for r in range(mb):
        dmax = max(dmax, row_ptr[r + 1] - row_ptr[r])
    ebuf = np.empty(dmax * z_lift, dtype=np.float32)
    st = np.empty((z_lift // _W, _ROWS, _W), dtype=np.float32)
    trend = give_up_state(mb * z_lift, max_iter, window)
    for it in range(1, max_iter + 1):
        unsat = 0
        for r in range(mb):
            if approx:
                unsat += _layer_am(row_ptr, cols, shifts, r, ssign, post, msg, ebuf, st)
            else:
                unsat += _layer_sp(row_ptr, cols, shifts, r, ssign, post, msg, ebuf, st)
        if unsat == 0 and hard_ok(row_ptr, cols, shifts, z_lift, ssign, post):
            return it, True
        if give_up(trend, it, unsat, stall, window, horizon):
            return it, False
    return max_iter, False


@njit(cache=True)
def give_up_state(checks, max_iter, window):
    """The state of ``give_up`` for a code of ``checks`` checks: (the lowest unmet count so far
    and its iteration, then b(i) for i = 1..max_iter when ``window`` > 0), int64."""
    state = np.zeros(2 + (max_iter + 1 if window > 0 else 0), dtype=np.int64)
    state[0] = checks + 1
    return state


@njit(cache=True, inline="always")
def give_up(state, it, unsat, stall, window, horizon):
    """``decode``'s give-up rules after iteration ``it`` with ``unsat`` unmet checks (state from
    ``give_up_state``, updated): no new low for ``stall`` iterations, or (``window`` > 0) the
    trend of the lowest count b(i) says it will not reach zero in ``horizon`` more."""
    if unsat < state[0]:
        state[0], state[1] = unsat, it
    elif it - state[1] >= stall:
        return True
    if window > 0:
        best = state[0]
        state[2 + it] = best
        if it > window and best > 0 and best * (best / state[2 + it - window]) ** (horizon / window) >= 1.0:
            return True
    return False
