"""ctypes wrappers of the fixed-point kernel (amin_i16.c): ``decoder(vector)`` has the
signature and return value of ``controller.postprocess._ldpc_core.decode`` (float32 state in
and out, converted to int16 (Q6 by default) on each call), ``raw(vector)`` works on int16 state."""

from __future__ import annotations

import ctypes

import numpy as np

import rig

_LIBS = {}
LB = 6      # LLR fractional bits of the default build (amin_i16.c's LB)


def _lib(lb=LB, defines=()):
    key = (lb, tuple(defines))
    if key not in _LIBS:
        lib = rig.build("amin_i16", (() if lb == LB else (f"LB={lb}",)) + tuple(defines))
        i64, i32p = ctypes.c_int64, ctypes.POINTER(ctypes.c_int32)
        lib.decode_i16.restype = i64
        lib.decode_i16.argtypes = [rig._I64P, rig._I64P, rig._I64P, i64, i64, rig._F32P, rig._F32P, rig._F32P,
                                   i64, i64, i64, i64, i64, i32p, ctypes.c_int32]
        lib.decode_i16_raw.restype = i64
        lib.decode_i16_raw.argtypes = [rig._I64P, rig._I64P, rig._I64P, i64, i64, rig._I16P, rig._I16P, rig._I16P,
                                       i64, i64, i64, i64, i32p, ctypes.c_int32]
        _LIBS[key] = lib
    return _LIBS[key]


def decoder(vector: bool = True, lb: int = LB, defines: tuple[str, ...] = ()):
    """Return decode(row_ptr, cols, shifts, z, ssign, post, msg, max_iter, stall, approx=True,
    window=0, horizon=0) -> (iterations, converged), as _ldpc_core.decode (approx must be True:
    this kernel has the amin structure only); lb: LLR fractional bits of the build; defines:
    its other compile-time options (amin_i16.c)."""
    lib = _lib(lb, defines)

    def decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, approx=True,
               window=0, horizon=0):
        if not approx:
            raise ValueError("the fixed-point kernel has the amin update only")
        conv = ctypes.c_int32(0)
        it = lib.decode_i16(row_ptr, cols, shifts, row_ptr.size - 1, int(z_lift), ssign, post, msg, post.size,
                            int(max_iter), int(stall), int(window), int(horizon), ctypes.byref(conv),
                            int(vector))
        if it < 0:
            raise ValueError(f"fixed-point kernel: Z = {z_lift} must be a positive multiple of 16, "
                             f"row degrees <= 128, max_iter >= 1")
        return int(it), bool(conv.value)
    return decode


def raw(vector: bool = True, lb: int = LB):
    """Return decode on int16 state: (row_ptr, cols, shifts, z, ss16, post16, msg16, max_iter,
    stall, window, horizon) -> (iterations, converged); ss16 is 0 / -32768 per check; post16
    holds 16 spare entries after the n posteriors (the kernel's vector loads read past a
    column's end), see ``to_q``; lb: LLR fractional bits of the build."""
    lib = _lib(lb)

    def decode(row_ptr, cols, shifts, z_lift, ss16, post16, msg16, max_iter, stall, window=0, horizon=0):
        if post16.size < (int(cols.max()) + 1) * z_lift + 16 or msg16.size != cols.size * z_lift:
            raise ValueError("post16 needs n + 16 entries (to_q(post, spare=16)), msg16 one per edge")
        conv = ctypes.c_int32(0)
        it = lib.decode_i16_raw(row_ptr, cols, shifts, row_ptr.size - 1, int(z_lift), ss16, post16, msg16,
                                int(max_iter), int(stall), int(window), int(horizon), ctypes.byref(conv),
                                int(vector))
        if it < 0:
            raise ValueError("fixed-point kernel: bad arguments")
        return int(it), bool(conv.value)
    return decode


def to_q(x: np.ndarray, spare: int = 0, lb: int = LB) -> np.ndarray:
    """float32 LLRs to int16 with lb fractional bits as the kernel converts them (round half
    even, +-32767), with ``spare`` zeros appended."""
    q = np.clip(np.rint(x.astype(np.float32) * np.float32(2 ** lb)), -32767, 32767).astype(np.int16)
    return np.concatenate([q, np.zeros(spare, np.int16)])
