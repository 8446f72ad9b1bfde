"""Checks of the rig's kernels (exit status 1 on a failure, naming QBER and seed):

1. the fixed-point kernel's AVX2 path (the default Q6 build and the Q7 one) matches its scalar reference bit for bit (posteriors,
   messages, iterations, convergence) on 10^5-bit frames at 2 / 5 / 8 %, from the priors and
   then warm from that state, and its float32 wrapper returns exactly the raw kernel's state;
2. the C port of the float32 amin kernel agrees with _ldpc_core.decode(..., approx=True) after
   10 iterations: posteriors within 1e-3 relative to the largest, the same hard decisions but
   where both posteriors are below 0.01 in magnitude (float rounding: the C port and numba's
   LLVM contract multiply-adds into FMAs at different places).

python bench/ldpc_ceiling/check.py [SEED ...]   (default seeds 5 6)
"""

from __future__ import annotations

import sys

import numpy as np

import fixed
import rig
from controller.postprocess import _ldpc_core


def check_fixed(q, seed, lb):
    c, ssign, llr = rig.frame(q, seed)
    ss = np.where(ssign < 0, -32768, 0).astype(np.int16)
    edges = c.cols.size * c.z
    states = []
    for vector in (True, False):
        dec = fixed.raw(vector, lb)
        p, m = fixed.to_q(llr, spare=16, lb=lb), np.zeros(edges, np.int16)
        r1 = dec(c.row_ptr, c.cols, c.shifts, c.z, ss, p, m, 12, 1000)
        r2 = dec(c.row_ptr, c.cols, c.shifts, c.z, ss, p, m, 100, 5, 10, 150)
        states.append((p, m, r1, r2))
    (p0, m0, a1, a2), (p1, m1, b1, b2) = states
    errors = []
    if not (np.array_equal(p0, p1) and np.array_equal(m0, m1) and a1 == b1 and a2 == b2):
        errors.append(f"AVX2 and scalar differ: {a1} {a2} / {b1} {b2}, "
                      f"{int(np.count_nonzero(p0 != p1))} posteriors, {int(np.count_nonzero(m0 != m1))} messages")
    # the float32 wrapper: same state as the raw kernel, in LLR units
    post, msg = llr.copy(), np.zeros(edges, np.float32)
    w1 = fixed.decoder(True, lb)(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, 12, 1000, True)
    w2 = fixed.decoder(True, lb)(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, 100, 5, True, 10, 150)
    if (w1, w2) != (a1, a2) or not (np.array_equal(post * 2 ** lb, p0[:post.size].astype(np.float32))
                                    and np.array_equal(msg * 2 ** lb, m0.astype(np.float32))):
        errors.append(f"float32 wrapper differs from the raw kernel: {w1} {w2} / {a1} {a2}")
    return errors, a1, a2


def check_f32(q, seed):
    c, ssign, llr = rig.frame(q, seed)
    edges = c.cols.size * c.z
    out = []
    for dec in (_ldpc_core.decode, rig.load_f32()):
        post, msg = llr.copy(), np.zeros(edges, np.float32)
        dec(c.row_ptr, c.cols, c.shifts, c.z, ssign, post, msg, 10, 1000, True)
        out.append(post)
    d = float(np.abs(out[0] - out[1]).max())
    scale = float(np.abs(out[0]).max())
    flip = (out[0] < 0) != (out[1] < 0)
    near0 = int(np.count_nonzero(flip & (np.abs(out[0]) < 0.01) & (np.abs(out[1]) < 0.01)))
    flips = int(np.count_nonzero(flip)) - near0
    errors = []
    if d > 1e-3 * scale or flips:
        errors.append(f"C float32 port: max |post diff| {d:.3g} (max |post| {scale:.3g}), {flips} hard decisions differ")
    return errors, d, scale, near0


def main(argv):
    seeds = [int(s) for s in argv] or [5, 6]
    failed = 0
    for q in (0.02, 0.05, 0.08):
        for seed in seeds:
            e1, a1, a2 = check_fixed(q, seed, fixed.LB)
            e1 += check_fixed(q, seed, 7)[0]
            e2, d, scale, near0 = check_f32(q, seed)
            status = "FAIL" if e1 or e2 else "ok"
            print(f"qber {q} seed {seed}: {status}  fixed-point (iterations, converged) {a1} then warm {a2}; "
                  f"f32 port max |post diff| {d:.3g} of {scale:.3g}, {near0} signs differ at |post| < 0.01")
            for e in e1 + e2:
                print(f"  FAIL qber {q} seed {seed}: {e}")
            failed += bool(e1 or e2)
    print("all ok" if not failed else f"{failed} cases failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
