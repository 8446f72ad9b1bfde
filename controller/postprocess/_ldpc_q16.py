"""Fixed-point (int16, 16 lanes) LDPC kernel: decoder "q16", the amin update in the phi domain.

The numba port of the measurement rig's C kernel ``bench/ldpc_ceiling/amin_i16.c`` (its
default build: LLRs in Q6, the piecewise phi, per-check tables), bit for bit its arithmetic;
``docs/BENCHMARKS.md``, "LDPC: a fixed-point kernel's ceiling" and "LDPC: the fixed-point
decoder "q16"".

Numbers:
  LLRs (posteriors, messages, inputs t = post - msg): int16, LSB 2^-6 (Q6, |LLR| < 512),
    saturating adds / subtracts.
  phi(x) = -ln tanh(x / 2) of an input's |t|: u16, LSB 2^-12 (Q12), x = min(|t|, XMAX - 1)
    in Q6, from 16-entry tables (``_phi_ref``, ``_Q.phi``):
    x < 2: linear in 16 segments of 1/8, the chord from the segment's start (|t| = 0 read
      as half an LSB): TAB[i] - (x mod 8) TAS[i], i = x >> 3;
    x >= 2: phi(h) e^-(l / 16) (1 - n / 64) with x = h + l / 16 + n / 64 (phi(h + d) is
      phi(h) e^-d within 0.1 % for h >= 2), the two factors from tables TH[h], TL[l]
      (products as the high halves of 16 x 16-bit products).
    Relative error < 0.65 % on [0.5, 4), < 2.5 % on [0.125, 0.5), up to 20 % below 0.125
    (absolute < 0.06 from 0.125 up); absolute < 3e-4 from 4 up (the Q12 rounding).
  Per check, over its inputs: S = sum of phi (saturating u16), the two largest phi
    u1 >= u2 (the two least reliable inputs), the sign (XOR of the syndrome and inputs).
  Messages (the amin structure of _ldpc_core in the phi domain): to an input with phi = u1
    phi(S - u1) (M1), with phi = u2 phi(S - u2) (M2), to the others the tangent
    phi(S) + u / sinh(S) capped at M2; phi(y) and 1 / sinh(y) of the per-check sums from
    the table TINV indexed by y >> 2 (y in Q12: steps of 2^-10), value at the step's
    midpoint (low 16 bits phi in Q6, high 16 bits 1024 / sinh).

Layered schedule as _ldpc_core: base rows in order; within a row a block of 16 checks runs
its gather over all the row's circulants, its per-check step, then its scatter (the checks of
one base row share no variable, so this is the check-by-check order of the scalar
reference ``_layer_ref``); stopping rules and return value of ``_ldpc_core.decode``.

The vector row pass ``_row_q16`` is explicit <16 x i16> LLVM IR (a numba intrinsic, house
style of _ldpc_core): saturating arithmetic by ``llvm.[su]{add,sub}.sat``, the 16-entry
tables by ``llvm.x86.avx2.pshuf.b`` (a 16-bit entry as two byte shuffles: x86 with AVX2
only), unsigned high products by ``llvm.x86.avx2.pmulhu.w``, the per-check TINV lookups by
``llvm.x86.avx2.gather.d.d.256``.  ``_layer_ref`` is the scalar reference (plain loops)
it matches bit for bit (tests/postprocess/test_ldpc_q16.py).
"""

from __future__ import annotations

import math

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils, config
from numba.extending import intrinsic

from . import _ldpc_core as core

W = 16                      # lanes (int16, one AVX2 vector)
LB = 6                      # LLR fractional bits (Q6)
QL = float(1 << LB)         # LLR scale
SA = LB - 3                 # phi region A: segments of 1/8
SB = LB - 4                 # phi region B: steps of 1/16
QP = 4096.0                 # phi scale (Q12)
XMAX = 10 << LB             # |t| clamped below 10.0
NT = 10241                  # TINV entries: y >> 2 for y (Q12) up to 10.0


def _compiles_for_avx2() -> bool:
    """Whether numba compiles for a CPU with AVX2 (``_row_q16``'s byte shuffles and gathers:
    without it LLVM cannot select them and aborts the process)."""
    if config.CPU_NAME in (None, "host"):
        return bool(llvm.get_host_cpu_features().get("avx2", False))
    return "+avx2" in (config.CPU_FEATURES or "")


AVX2 = _compiles_for_avx2()


def _phi(x: float) -> float:
    return -math.log(math.tanh(x / 2.0))


def _rnd(x: float) -> float:
    return math.floor(x + 0.5)


def tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (TAB, TAS, TH, TL) (uint16, 16 each) and TINV (int32, NT): the phi tables of the
    module docstring, from the formulas in double precision (Python's math: the C library's
    functions, as the C rig)."""
    tab, tas, th, tl = (np.zeros(16, np.uint16) for _ in range(4))
    w = float(1 << SA)
    for i in range(16):
        a = _rnd(QP * _phi((w * i if i > 0 else 0.5) / QL))
        b = _rnd(QP * _phi(w * (i + 1) / QL))
        tab[i] = a
        tas[i] = _rnd((a - b) / w)
        th[i] = _rnd(2.0 * QP * _phi(i if i >= 2 else 2))
        tl[i] = _rnd(32768.0 * math.exp(-i / 16.0))
    tinv = np.zeros(NT, np.uint32)
    for j in range(NT):
        y = (4.0 * j + 2.0) / QP
        m = min(math.floor(QL * _phi(y) + 0.5), 32767)
        k = min(math.floor(16.0 * QL / math.sinh(y) + 0.5), 65535)
        tinv[j] = m | (k << 16)
    return tab, tas, th, tl, tinv.view(np.int32)


TAB, TAS, TH, TL, TINV = tables()
# the 16-entry tables as byte planes for the byte shuffle: rows TAB low bytes, TAB high bytes,
# TAS lo, TAS hi, TH lo, TH hi, TL lo, TL hi, each entry list twice (one copy per 128-bit lane)
PLANES = np.array([np.tile(t & 0xFF if half == 0 else t >> 8, 2)
                   for t in (TAB, TAS, TH, TL) for half in (0, 1)], dtype=np.uint8)


# ---- scalar reference (plain loops, integers held in int64)

@njit(cache=True, inline="always")
def _sat16(x):
    return 32767 if x > 32767 else (-32768 if x < -32768 else x)


@njit(cache=True, inline="always")
def _phi_ref(a, tab, tas, th, tl):
    # phi of |t| = a (0..32768) in Q12, u16
    x = a if a < XMAX - 1 else XMAX - 1
    if x < (2 << LB):
        i = x >> SA
        return (np.int64(tab[i]) - ((x & ((1 << SA) - 1)) * np.int64(tas[i]) & 0xFFFF)) & 0xFFFF
    u = (np.int64(th[x >> LB]) * np.int64(tl[(x >> SB) & 15])) >> 16
    return (u - ((u * ((x & ((1 << SB) - 1)) << (16 - LB))) >> 16)) & 0xFFFF


@njit(cache=True)
def _layer_ref(row_ptr, cols, shifts, r, ss, post, msg, z, tab, tas, th, tl, tinv):
    """One base row in place on int16 state, check by check (the C ``layer_ref``); return its
    checks not met by the new posteriors."""
    e0 = row_ptr[r]
    d = row_ptr[r + 1] - e0
    unmet = 0
    tb = np.empty(d, np.int64)
    ub = np.empty(d, np.int64)
    for i in range(z):
        s = 0
        u1 = 0
        u2 = 0
        sg = np.int64(ss[r * z + i])
        ps = 0
        for g in range(d):
            e = e0 + g
            v = i + shifts[e]
            if v >= z:
                v -= z
            t = _sat16(np.int64(post[cols[e] * z + v]) - np.int64(msg[e * z + i]))
            u = _phi_ref(-t if t < 0 else t, tab, tas, th, tl)
            tb[g] = t
            ub[g] = u
            s = min(s + u, 65535)
            sg ^= t
            lo = u1 if u1 < u else u
            u2 = u2 if u2 > lo else lo
            u1 = u1 if u1 > u else u
        j0 = min(s >> 2, NT - 1)
        j1 = min(max(s - u1, 0) >> 2, NT - 1)
        j2 = min(max(s - u2, 0) >> 2, NT - 1)
        t0 = np.int64(tinv[j0]) & 0xFFFFFFFF
        mall = t0 & 0xFFFF
        kq = t0 >> 16
        m1 = np.int64(tinv[j1]) & 0xFFFF
        m2 = np.int64(tinv[j2]) & 0xFFFF
        for g in range(d):
            e = e0 + g
            v = i + shifts[e]
            if v >= z:
                v -= z
            t = tb[g]
            u = ub[g]
            mag = min(mall + ((u * kq) >> 16), 65535)
            mag = mag if mag < m2 else m2
            if u == u2:
                mag = m2
            if u == u1:
                mag = m1
            rr = -mag if (t ^ sg) < 0 else mag
            msg[e * z + i] = rr
            p = _sat16(t + rr)
            post[cols[e] * z + v] = p
            ps ^= p
        unmet += (ps ^ np.int64(ss[r * z + i])) < 0
    return unmet


# ---- the vector row pass (LLVM IR, 16 int16 lanes)

_I8 = ir.IntType(8)
_I16 = ir.IntType(16)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_HV = ir.VectorType(_I16, W)
_WV = ir.VectorType(_I32, W)
_BV = ir.VectorType(_I8, 2 * W)


def _hv(x):
    """An int16 vector constant (x taken mod 2^16)."""
    return ir.Constant(_HV, [ir.Constant(_I16, x & 0xFFFF)] * W)


def _c64(x):
    return ir.Constant(_I64, x)


class _Q:
    """Emit <16 x i16> operations on one IRBuilder."""

    def __init__(self, builder):
        self.b = builder
        mod = builder.module
        f2 = ir.FunctionType(_HV, [_HV, _HV])
        self._sat = {name: cgutils.get_or_insert_function(mod, f2, f"llvm.{name}.sat.v16i16")
                     for name in ("sadd", "ssub", "uadd", "usub")}
        self._pshufb = cgutils.get_or_insert_function(mod, ir.FunctionType(_BV, [_BV, _BV]),
                                                      "llvm.x86.avx2.pshuf.b")
        self._pmulhu = cgutils.get_or_insert_function(mod, f2, "llvm.x86.avx2.pmulhu.w")

    def sat(self, name, x, y):
        return self.b.call(self._sat[name], [x, y])

    def umin(self, x, y):
        return self.b.select(self.b.icmp_unsigned("<", x, y), x, y)

    def umax(self, x, y):
        return self.b.select(self.b.icmp_unsigned(">", x, y), x, y)

    def mulhi_u(self, x, y):
        # high halves of the u16 x u16 products (as an intrinsic: LLVM narrows the
        # zext / mul / lshr / trunc form of an operand known < 2^12 into two 32-bit products)
        return self.b.call(self._pmulhu, [x, y])

    def abs(self, x):
        # vpabsw: -32768 stays 0x8000 (as u16: 32768)
        b = self.b
        return b.select(b.icmp_signed("<", x, _hv(0)), b.sub(_hv(0), x), x)

    def tab16(self, planes, k, i):
        # table k (PLANES rows 2k, 2k + 1) at the 16 word indices i (< 128; the entry i mod 16)
        b = self.b
        lo = b.bitcast(b.call(self._pshufb, [self.plane(planes, 2 * k), b.bitcast(i, _BV)]), _HV)
        hi = b.bitcast(b.call(self._pshufb, [self.plane(planes, 2 * k + 1),
                                             b.bitcast(b.shl(i, _hv(8)), _BV)]), _HV)
        return b.or_(b.and_(lo, _hv(0x00FF)), b.and_(hi, _hv(0xFF00)))

    def plane(self, planes, row):
        b = self.b
        return b.load(b.bitcast(b.gep(planes, [_c64(row * 2 * W)]), _BV.as_pointer()), align=1)

    def phi(self, planes, x):
        # phi of x = min(|t|, XMAX - 1), u16 in Q12 (``_phi_ref``)
        b = self.b
        i = b.lshr(x, _hv(SA))
        ua = b.sub(self.tab16(planes, 0, i), b.mul(b.and_(x, _hv((1 << SA) - 1)), self.tab16(planes, 1, i)))
        h = b.lshr(x, _hv(LB))
        l = b.and_(b.lshr(x, _hv(SB)), _hv(15))
        ub = self.mulhi_u(self.tab16(planes, 2, h), self.tab16(planes, 3, l))
        ub = b.sub(ub, self.mulhi_u(ub, b.shl(b.and_(x, _hv((1 << SB) - 1)), _hv(16 - LB))))
        return b.select(b.icmp_signed(">", x, _hv((2 << LB) - 1)), ub, ua)


def _lookup(builder, tinv, idx):
    """TINV at 16 u16 indices (< NT): a <16 x i32>, two ``vpgatherdd`` of 8."""
    v8 = ir.VectorType(_I32, 8)
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v8, [v8, _I8.as_pointer(), v8, v8, _I8]),
                                        "llvm.x86.avx2.gather.d.d.256")
    wide = builder.zext(idx, _WV)
    base = builder.bitcast(tinv, _I8.as_pointer())
    ones = ir.Constant(v8, [ir.Constant(_I32, -1)] * 8)
    halves = []
    for h in range(2):
        part = builder.shuffle_vector(wide, wide, ir.Constant(ir.VectorType(_I32, 8),
                                                              [ir.Constant(_I32, 8 * h + k) for k in range(8)]))
        halves.append(builder.call(fn, [ir.Constant(v8, [ir.Constant(_I32, 0)] * 8), base, part, ones,
                                        ir.Constant(_I8, 4)]))
    return builder.shuffle_vector(halves[0], halves[1], ir.Constant(_WV, [ir.Constant(_I32, k) for k in range(W)]))


@intrinsic
def _row_q16(typingctx, post, msg, ss, tbuf, ubuf, cols, shifts, planes, tinv, r, e0, d, z):
    """One base row in place on int16 state, 16 checks per block (module docstring): per block
    the gather over the row's ``d`` circulants (entries e0..e0 + d - 1; inputs t and their phi
    into ``tbuf`` / ``ubuf``, 16 x d int16 each), the per-check lookups, the scatter; return the
    row's checks not met by the new posteriors."""
    def codegen(context, builder, sig, args):
        post_a, msg_a, ss_a, tb_a, ub_a, cols_a, sh_a, pl_a, ti_a = (
            context.make_array(ty)(context, builder, val).data for ty, val in zip(sig.args[:9], args[:9]))
        r, e0, d, z = args[9:]
        q = _Q(builder)
        b = builder
        zero = _hv(0)
        acc = cgutils.alloca_once_value(b, _c64(0))
        s_p, u1_p, u2_p, sg_p, ps_p = (cgutils.alloca_once(b, _HV) for _ in range(5))
        rz = b.mul(r, z)
        with cgutils.for_range(b, b.sdiv(z, _c64(W))) as blk:
            lane = b.mul(blk.index, _c64(W))
            for p in (s_p, u1_p, u2_p, ps_p):
                b.store(zero, p)
            ssv = core._vload(b, ss_a, b.add(rz, lane), _HV)
            b.store(ssv, sg_p)

            def circulant(g):
                e = b.add(e0, g)
                col0 = b.mul(b.load(b.gep(cols_a, [e])), z)
                a = b.add(lane, b.load(b.gep(sh_a, [e])))
                a = b.select(b.icmp_signed(">=", a, z), b.sub(a, z), a)
                return e, col0, a, b.add(b.mul(e, z), lane), b.mul(g, _c64(W))

            with cgutils.for_range(b, d) as loop:
                e, col0, a, im, ib = circulant(loop.index)
                t = q.sat("ssub", core._rot_load(b, post_a, col0, a, z, _HV), core._vload(b, msg_a, im, _HV))
                u = q.phi(pl_a, q.umin(q.abs(t), _hv(XMAX - 1)))
                core._vstore(b, t, tb_a, ib)
                core._vstore(b, u, ub_a, ib)
                b.store(q.sat("uadd", b.load(s_p), u), s_p)
                b.store(b.xor(b.load(sg_p), t), sg_p)
                u1 = b.load(u1_p)
                b.store(q.umax(b.load(u2_p), q.umin(u1, u)), u2_p)
                b.store(q.umax(u1, u), u1_p)
            s, u1, u2, sg = (b.load(p) for p in (s_p, u1_p, u2_p, sg_p))
            ntm = _hv(NT - 1)
            t0 = _lookup(b, ti_a, q.umin(b.lshr(s, _hv(2)), ntm))
            mall = b.trunc(t0, _HV)
            kq = b.trunc(b.lshr(t0, ir.Constant(_WV, [ir.Constant(_I32, 16)] * W)), _HV)
            m1 = b.trunc(_lookup(b, ti_a, q.umin(b.lshr(q.sat("usub", s, u1), _hv(2)), ntm)), _HV)
            m2 = b.trunc(_lookup(b, ti_a, q.umin(b.lshr(q.sat("usub", s, u2), _hv(2)), ntm)), _HV)
            with cgutils.for_range(b, d) as loop:
                e, col0, a, im, ib = circulant(loop.index)
                t = core._vload(b, tb_a, ib, _HV)
                u = core._vload(b, ub_a, ib, _HV)
                mag = q.umin(q.sat("uadd", mall, q.mulhi_u(u, kq)), m2)
                mag = b.select(b.icmp_unsigned("==", u, u2), m2, mag)
                mag = b.select(b.icmp_unsigned("==", u, u1), m1, mag)
                rr = b.select(b.icmp_signed("<", b.xor(t, sg), zero), b.sub(zero, mag), mag)
                core._vstore(b, rr, msg_a, im)
                p = q.sat("sadd", t, rr)
                core._rot_store(b, p, post_a, col0, a, z)
                b.store(b.xor(b.load(ps_p), p), ps_p)
            bad = b.icmp_signed("<", b.xor(b.load(ps_p), ssv), zero)
            bits = b.bitcast(bad, _I16)
            ctpop = cgutils.get_or_insert_function(b.module, ir.FunctionType(_I16, [_I16]), "llvm.ctpop.i16")
            b.store(b.add(b.load(acc), b.zext(b.call(ctpop, [bits]), _I64)), acc)
        return b.load(acc)
    sig = types.int64(post, msg, ss, tbuf, ubuf, cols, shifts, planes, tinv, r, e0, d, z)
    return sig, codegen


# ---- the decoder

@njit(cache=True)
def _to_q(x, out):
    # float32 LLRs to Q6 int16: round half even, saturated at +-32767
    for i in range(x.size):
        v = np.rint(x[i] * np.float32(QL))
        out[i] = 32767 if v > 32767.0 else (-32767 if v < -32767.0 else np.int16(v))


@njit(cache=True)
def _from_q(y, out):
    for i in range(out.size):
        out[i] = np.float32(y[i]) * np.float32(1.0 / QL)


@njit(cache=True, nogil=True)
def decode_raw(row_ptr, cols, shifts, z_lift, ss, post, msg, max_iter, stall, window=0, horizon=0,
               vector=True):
    """Decode in place on int16 state (``ss``: 0 or -32768 per check, the syndrome sign;
    ``post`` / ``msg`` Q6); return (iterations, converged) by ``decode``'s stopping rules;
    vector: the IR row pass ``_row_q16``, else the scalar reference ``_layer_ref``."""
    if z_lift <= 0 or z_lift % W != 0:
        raise ValueError("the q16 decoder needs a lift Z that is a positive multiple of 16")
    mb = row_ptr.size - 1
    dmax = 0
    for r in range(mb):
        dmax = max(dmax, row_ptr[r + 1] - row_ptr[r])
    tbuf = np.empty(dmax * W, np.int16)
    ubuf = np.empty(dmax * W, np.int16)
    ssign = np.empty(ss.size, np.float32)
    for i in range(ss.size):
        ssign[i] = -1.0 if ss[i] < 0 else 1.0
    trend = core.give_up_state(mb * z_lift, max_iter, window)
    for it in range(1, max_iter + 1):
        unsat = 0
        for r in range(mb):
            if vector:
                unsat += _row_q16(post, msg, ss, tbuf, ubuf, cols, shifts, PLANES, TINV, np.int64(r),
                                  np.int64(row_ptr[r]), np.int64(row_ptr[r + 1] - row_ptr[r]), np.int64(z_lift))
            else:
                unsat += _layer_ref(row_ptr, cols, shifts, r, ss, post, msg, z_lift, TAB, TAS, TH, TL, TINV)
        if unsat == 0 and core.hard_ok(row_ptr, cols, shifts, z_lift, ssign, post):
            return it, True
        if core.give_up(trend, it, unsat, stall, window, horizon):
            return it, False
    return max_iter, False


def decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, window=0, horizon=0):
    """Run the fixed-point layered amin decoder on the float32 (``post``, ``msg``) in place;
    return (iterations, converged), the signature (without ``approx``), stopping rules and
    return value of ``_ldpc_core.decode``.  The state is converted to Q6 int16 on entry (round
    half even, saturated at +-32767 / 64) and back on exit (exact), so a warm call continues
    from the previous call's state.  Z must be a positive multiple of 16 (ValueError); numba
    must compile for AVX2 (``AVX2``, else RuntimeError).  The kernel releases the GIL."""
    if not AVX2:
        raise RuntimeError("the q16 decoder needs a CPU with AVX2 (numba compiles for one without)")
    return _decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, window, horizon)


@njit(cache=True, nogil=True)
def _decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, window=0, horizon=0):
    # ``decode`` (checked for AVX2)
    if z_lift <= 0 or z_lift % W != 0:
        raise ValueError("the q16 decoder needs a lift Z that is a positive multiple of 16")
    ss = np.empty(ssign.size, np.int16)
    for i in range(ssign.size):
        ss[i] = -32768 if ssign[i] < 0 else 0
    p16 = np.empty(post.size, np.int16)
    m16 = np.empty(msg.size, np.int16)
    _to_q(post, p16)
    _to_q(msg, m16)
    it, ok = decode_raw(row_ptr, cols, shifts, z_lift, ss, p16, m16, max_iter, stall, window, horizon, True)
    _from_q(p16, post)
    _from_q(m16, msg)
    return it, ok
