"""The blind LDPC protocol with a substituted kernel: bench/reconcile.py's logic (same seeds,
same frames), once per kernel, kernels alternating; prints one JSON object per run.

python bench/ldpc_ceiling/protocol.py --qber 0.02 --frames 40 --seed 1 --rounds 2 [--kernels numba,i16]
    [--set NAME=VALUE ...]

numba: controller's _ldpc_core.decode (decoder "amin", passed to the benchmark unless
--decoder says "sp": the library's default "q16" would not call the patched kernel); i16: the fixed-point
kernel (amin_i16.c, AVX2) through its float32 wrapper (fixed.decoder), monkeypatched over
_ldpc_core.decode as ldpc.py calls it.  The fixed-point kernel needs Z a multiple of 16: the
benchmark's untimed 2000-bit warm-up frame (Z = 8) falls back to the numba kernel, and the
count of such calls is printed ("fallback_calls"; the timed 10^5-bit frames have Z = 256).
Added figures: decoder calls (attempts) and iterations per frame, counted by the wrapper.
"""

from __future__ import annotations

import argparse
import json
import sys

import rig  # noqa: F401  (sys.path, OPENBLAS_NUM_THREADS)

from bench import reconcile
from controller.postprocess import _ldpc_core, ldpc

NUMBA = _ldpc_core.decode


def counting(kernel, z_main):
    stats = {"calls": 0, "iterations": 0, "fallback_calls": 0}

    def decode(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, approx=False,
               window=0, horizon=0):
        fn = kernel
        if kernel is not NUMBA and z_lift % 16:
            fn = NUMBA
            stats["fallback_calls"] += 1
        it, ok = fn(row_ptr, cols, shifts, z_lift, ssign, post, msg, max_iter, stall, approx, window, horizon)
        if z_lift == z_main:
            stats["calls"] += 1
            stats["iterations"] += it
        return it, ok
    return decode, stats


def main(argv):
    ap = argparse.ArgumentParser()
    ap.add_argument("--qber", type=float, required=True)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--bits", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--kernels", default="numba,i16")
    ap.add_argument("--decoder", default="amin", choices=("amin", "sp"),
                    help="passed to bench/reconcile.py: the decoders that call _ldpc_core.decode")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                    help="passed to bench/reconcile.py (e.g. --set f_start=1.10 --set steps=0 "
                         "--set pre=0 --set max_retries=0: single attempts at f 1.10)")
    args = ap.parse_args(argv)
    import fixed
    kernels = {"numba": NUMBA, "i16": fixed.decoder(vector=True), "i16ref": fixed.decoder(vector=False),
               "i16q7": fixed.decoder(vector=True, lb=7),
               "i16phix": fixed.decoder(vector=True, defines=("PHI_EXACT",))}
    z_main = ldpc.plan_frame(args.bits, args.qber).z
    for rnd in range(args.rounds):
        for name in args.kernels.split(","):
            dec, stats = counting(kernels[name], z_main)
            ldpc.core.decode = dec
            try:
                out = reconcile.run(["--method", "ldpc", "--qber", str(args.qber), "--bits", str(args.bits),
                                     "--frames", str(args.frames), "--seed", str(args.seed)]
                                    + [x for item in args.set for x in ("--set", item)]
                                    + ["--decoder", args.decoder])
            finally:
                ldpc.core.decode = NUMBA
            out.update(kernel=name, round=rnd, attempts_per_frame=stats["calls"] / args.frames,
                       iterations_per_frame=stats["iterations"] / args.frames,
                       fallback_calls=stats["fallback_calls"])
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
