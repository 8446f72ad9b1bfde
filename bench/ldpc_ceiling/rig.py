"""Shared parts of the LDPC kernel-ceiling rig: build and load the C kernels, make frames.

A measurement rig (README.md here), imported by nothing in controller/.
"""

from __future__ import annotations

import ctypes
import math
import os
import subprocess
import sys
from pathlib import Path

# numpy's OpenBLAS threads spin after use and process_time counts them: one thread
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from controller.postprocess import ldpc  # noqa: E402

CFLAGS = ["-O3", "-mavx2", "-mfma", "-shared", "-fPIC"]
_I64P = np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS")
_F32P = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_I16P = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")


def build(name: str, defines: tuple[str, ...] = ()) -> ctypes.CDLL:
    """Compile HERE/name.c (with -D ``defines``) to a shared object in HERE/build (when older)
    and load it."""
    src = HERE / f"{name}.c"
    out = HERE / "build" / ("_".join([name, *defines]).replace("=", "") + ".so")
    out.parent.mkdir(exist_ok=True)
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["gcc", *CFLAGS, *(f"-D{d}" for d in defines), str(src), "-o", str(out), "-lm"],
                       check=True)
    return ctypes.CDLL(str(out))


def frame(q: float, seed: int, k: int = 100_000):
    """Return (code, ssign, llr) of one k-bit frame at QBER q: a random word of the frame's
    code layout (shortened bits 0), its syndrome signs, Bob's priors (errors i.i.d. q; the
    punctured bits prior 0, the shortened ones known).  Same construction as /tmp/s7/kbench.py."""
    plan = ldpc.plan_frame(k, q)
    c = ldpc.code(plan)
    lay = ldpc.layout(plan, seed)
    rng = np.random.default_rng(seed)
    word = rng.integers(0, 2, plan.n).astype(np.uint8)
    word[lay.short] = 0
    s = ldpc.syndrome(c, word)
    ssign = np.where(s == 0, 1.0, -1.0).astype(np.float32)
    l0 = np.float32(math.log((1 - q) / q))
    bob = word ^ (rng.random(plan.n) < q).astype(np.uint8)
    llr = np.zeros(plan.n, np.float32)
    llr[lay.key_pos] = np.where(bob[lay.key_pos] == 0, l0, -l0)
    llr[lay.short] = 30.0
    return c, ssign, llr


def load_f32():
    """The C port of the float32 amin kernel: decode(row_ptr, cols, shifts, z, ssign, post,
    msg, max_iter, stall, window=0, horizon=0) -> (iterations, converged)."""
    lib = build("amin_f32")
    f = lib.decode_f32
    f.restype = ctypes.c_int64
    f.argtypes = [_I64P, _I64P, _I64P, ctypes.c_int64, ctypes.c_int64, _F32P, _F32P, _F32P,
                  ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                  ctypes.POINTER(ctypes.c_int32)]

    def decode(row_ptr, cols, shifts, z, ssign, post, msg, max_iter, stall, approx=True,
               window=0, horizon=0):
        if not approx:
            raise ValueError("the C float32 port has the amin update only")
        conv = ctypes.c_int32(0)
        it = f(row_ptr, cols, shifts, row_ptr.size - 1, z, ssign, post, msg, max_iter, stall,
               window, horizon, ctypes.byref(conv))
        return int(it), bool(conv.value)
    return decode


def load_load_avg() -> float:
    return os.getloadavg()[0]
