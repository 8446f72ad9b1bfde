"""Kernel timing: CPU ns per edge-iteration, fixed iterations, one frame, alternating runs.

python bench/ldpc_ceiling/kbench.py QBER ITERS REPS SEED KERNEL [KERNEL ...]

KERNEL: numba (controller's _ldpc_core.decode, amin), q16 (controller's _ldpc_q16.decode), f32 (C port of it, amin_f32.c), i16
(the fixed-point kernel, amin_i16.c, AVX2), i16ref (its scalar reference), i16q7 (LLRs in Q7),
i16phix (per-edge phi from a rounded table by gathers), and, timing only with wrong values,
i16-nophi, i16-nopc, i16-nophi-nopc (no per-edge phi / no per-check lookups / neither).  The first kernel
is the reference of the agreement lines.  stall = 1000: every run does ITERS iterations
unless the frame converges first (the iterations are printed).
"""

from __future__ import annotations

import sys
import time

import numpy as np

import rig

KERNELS = {}
VARIANTS = {        # fixed-point builds: (AVX2, LLR fractional bits, defines)
    "i16": (True, 6, ()), "i16ref": (False, 6, ()), "i16q7": (True, 7, ()),
    "i16phix": (True, 6, ("PHI_EXACT",)),
    "i16-nophi": (True, 6, ("TIMING_NO_PHI",)), "i16-nopc": (True, 6, ("TIMING_NO_PERCHECK",)),
    "i16-nophi-nopc": (True, 6, ("TIMING_NO_PHI", "TIMING_NO_PERCHECK")),
}


def kernel(name):
    if name not in KERNELS:
        if name == "numba":
            from controller.postprocess import _ldpc_core
            KERNELS[name] = _ldpc_core.decode
        elif name == "q16":      # the library's fixed-point decoder (the amin structure only)
            from controller.postprocess import _ldpc_q16

            def q16(row_ptr, cols, shifts, z, ssign, post, msg, max_iter, stall, approx=True, window=0,
                    horizon=0):
                return _ldpc_q16.decode(row_ptr, cols, shifts, z, ssign, post, msg, max_iter, stall, window,
                                        horizon)
            KERNELS[name] = q16
        elif name == "f32":
            KERNELS[name] = rig.load_f32()
        elif name in VARIANTS:
            import fixed
            vector, lb, defines = VARIANTS[name]
            KERNELS[name] = fixed.decoder(vector, lb, defines)
        else:
            raise SystemExit(f"unknown kernel {name!r}")
    return KERNELS[name]


def run(name, c, ssign, llr, iters):
    post = llr.copy()
    msg = np.zeros(c.cols.size * c.z, np.float32)
    t = time.process_time()
    it, ok = kernel(name)(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, iters, 1000, True)
    dt = time.process_time() - t
    return dt / (it * c.cols.size * c.z) * 1e9, post, msg, it


def main(argv):
    q, iters, reps, seed = float(argv[0]), int(argv[1]), int(argv[2]), int(argv[3])
    names = argv[4:]
    c, ssign, llr = rig.frame(q, seed)
    print(f"qber {q} seed {seed} z {c.z} edges {c.cols.size * c.z} iters {iters} reps {reps} "
          f"load {rig.load_load_avg():.2f}")
    res = {n: [] for n in names}
    outs = {}
    for n in names:
        run(n, c, ssign, llr, 1)       # compile / warm
    for _ in range(reps):
        for n in names:
            ns, post, msg, it = run(n, c, ssign, llr, iters)
            res[n].append(ns)
            outs[n] = (post, msg, it)
    for n in names:
        a = np.array(res[n])
        print(f"{n:7s} ns/edge-iteration min {a.min():.3f} median {np.median(a):.3f}  iterations {outs[n][2]}")
    p0, m0, _ = outs[names[0]]
    for n in names[1:]:
        p, m, _ = outs[n]
        print(f"  {n} vs {names[0]}: max|post diff| {float(np.abs(p - p0).max()):.3g} "
              f"(max|post| {float(np.abs(p0).max()):.3g}), max|msg diff| {float(np.abs(m - m0).max()):.3g}, "
              f"hard decisions differ in {int(np.count_nonzero((p < 0) != (p0 < 0)))} of {p.size}, "
              f"identical post {np.array_equal(p, p0)}")
    print(f"load {rig.load_load_avg():.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
