"""Benchmark of information reconciliation: efficiency, frame errors, rounds, throughput.

Figures (over ``--frames`` frames of ``--bits`` bits with i.i.d. errors at ``--qber``):

* ``efficiency``: mean f = leaked / (N h(Q)), the leak read from the channel meter.
* ``frame_error_rate``: fraction of frames where Bob's corrected key differs from Alice's.
* ``rounds``: mean round trips (two flights) per frame; ``rounds_max`` the largest.
* ``seconds_per_frame``: median wall time of one frame, both parties on one core.
* ``mbit_per_s``: N / seconds_per_frame / 1e6.
* ``cpu_seconds_per_frame``, ``mbit_per_s_cpu``: the same from the process CPU time, which
  a machine shared with other jobs does not inflate (both parties, one thread).
* ``decoder``: the LDPC check update used (``--decoder``, default the library's).
* ``threads``: (ldpc) frames Bob decodes at once (``--threads``, default 1).  A "frame" of
  this benchmark is one key of ``--bits`` bits, which LDPC cuts into frames of 10^5 to
  2 x 10^5 bits; with more than one thread the wall figures use several cores and the CPU
  figures count them all.
* ``checks``: (cascade) the BICONF checks begun after Bob's last correction that end a frame
  (``--checks C``, default the library's CHECKS = 18).  ``--checks C`` also cuts the schedule
  to 2 + C passes (the two block passes and C checks; more are asked for when corrections
  leave fewer than C clean), so a frame ends with errors with probability E[R] 2^-C (R: the
  runs of checks begun with errors left): lowering C measures that model where failures
  are frequent; ``bench cascade_fer`` runs the same frames and also gives E[R]
  (docs/BENCHMARKS.md, "Cascade, standard mode").
* ``decoder_iterations``: (ldpc) mean decoder iterations per frame of ``--bits`` bits, summed
  over its LDPC frames and attempts; ``edge_iterations_per_bit``: their edge updates
  (iterations x edges of each code) per key bit; ``ns_per_edge_iteration``: the decoding
  threads' CPU time inside the kernel per edge update; ``decode_cpu_share``: the median over
  frames of that CPU time over the process's (1 thread: the rest is host work on both sides;
  the first frame of a new code size also builds the code).  10 Mbit/s is 100 ns per
  key bit, so edge_iterations_per_bit x ns_per_edge_iteration is a floor of the time per bit.
* ``options``: the method options set with ``--set NAME=VALUE`` (repeatable; any keyword of
  ``reconcile`` for the method, e.g. ``--set f_start=1.10 --set steps=0 --set pre=0 --set
  max_retries=0`` for single LDPC attempts at f 1.10).
* ``load_average``: the 1-minute load average of the machine at the start and the end of
  the run (wall-clock figures on a loaded machine are lower bounds).

Run ``qkdnode bench reconcile --method cascade --qber 0.02 --bits 1000000 --frames 10 --json``
or ``python -m bench.reconcile ...``.  A small untimed frame first compiles the numba kernels.
"""

import argparse
import ast
import json
import os
import statistics
import sys
import time

import numpy as np


def _parse(argv):
    from controller.postprocess.ldpc import DECODERS

    parser = argparse.ArgumentParser(prog="qkdnode bench reconcile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--method", choices=("cascade", "ldpc"), default="cascade")
    parser.add_argument("--mode", choices=("standard", "low-round"), default="standard",
                        help="cascade mode")
    parser.add_argument("--threads", type=int, default=None,
                        help="ldpc: frames Bob decodes at once (default 1)")
    parser.add_argument("--decoder", choices=DECODERS, default=None,
                        help="ldpc check update (default: the library's, q16)")
    parser.add_argument("--checks", type=int, default=None,
                        help="cascade: clean checks that end a frame (schedule of 2 + C passes; default 18)")
    parser.add_argument("--qber", type=float, default=0.02, help="bit error rate of the frames")
    parser.add_argument("--bits", type=int, default=1_000_000, help="frame length N")
    parser.add_argument("--frames", type=int, default=10, help="number of frames K")
    parser.add_argument("--seed", type=int, default=1, help="seed of keys, errors and permutations")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a method option of reconcile (repeatable), e.g. f_start=1.10")
    parser.add_argument("--json", action="store_true", help="accepted for the qkdnode bench convention")
    return parser.parse_args(argv)


def _settings(items: list[str]) -> dict:
    # NAME=VALUE -> {NAME: value}, the value a Python literal (1.1, 0, True, None) or else a string
    out = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise SystemExit(f"--set takes NAME=VALUE with NAME an option name, got {item!r}")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


# The untimed first frame (compiles the numba kernels), drawn from the run's rng before the frames.
WARM_BITS = 2000


def draw(rng: np.random.Generator, bits: int, qber: float) -> tuple[np.ndarray, np.ndarray]:
    """Return one frame from ``rng``: Alice's key of ``bits`` uniform bits and Bob's, with i.i.d.
    errors at ``qber`` (bench/cascade_fer.py draws the same frames)."""
    a = rng.integers(0, 2, bits, dtype=np.uint8)
    return a, a ^ (rng.random(bits) < qber).astype(np.uint8)


def frame_seed(seed: int, frame: int) -> int:
    """Return the public seed (Cascade's permutations) of frame ``frame`` of a run with ``seed``."""
    return seed * 1_000_003 + frame


def _default_decoder() -> str:
    from controller.postprocess.ldpc import Options
    return Options.decoder


def run(argv: list[str]) -> dict:
    """Run the benchmark with command-line style ``argv``; return the figures."""
    from controller.postprocess.cascade import CHECKS
    from controller.postprocess.infotheory import h2
    from controller.postprocess.reconcile import reconcile

    args = _parse(argv)
    options = {"mode": args.mode} if args.method == "cascade" else {}
    for name, method, low in (("decoder", "ldpc", None), ("threads", "ldpc", 1), ("checks", "cascade", 1)):
        value = getattr(args, name)
        if value is None:
            continue
        if args.method != method:
            raise SystemExit(f"--{name} is {'an' if method == 'ldpc' else 'a'} {method} option")
        if low is not None and value < low:
            raise SystemExit(f"--{name} must be >= {low}, got {value}")
        options[name] = value
    if "checks" in options:
        options["passes"] = 2 + options["checks"]
    settings = _settings(args.set)
    own = sorted(set(settings) & {"mode", "decoder", "threads", "checks", "seed", "rng", "stats"})
    if own:
        raise SystemExit(f"--set {own[0]}: use the benchmark's own flag for it (--{own[0]}), not --set")
    options.update(settings)
    rng = np.random.default_rng(args.seed)
    try:
        reconcile(*draw(rng, WARM_BITS, args.qber), args.qber, args.method, seed=0, **options)
    except (TypeError, ValueError) as exc:
        raise SystemExit(f"bad option for {args.method}: {exc}") from exc
    load_start = os.getloadavg()[0]
    effs, rounds, times, cpu, failures, decoding = [], [], [], [], 0, []
    for frame in range(args.frames):
        a, b = draw(rng, args.bits, args.qber)
        t0, c0 = time.perf_counter(), time.process_time()
        if args.method == "ldpc":     # Alice's private bits (punctured values, hash points)
            options["rng"] = np.random.default_rng([args.seed, frame])
        fixed, rep = reconcile(a, b, args.qber, args.method, seed=frame_seed(args.seed, frame), **options)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        failures += int(not np.array_equal(fixed, a))
        effs.append(rep.leaked_bits / (args.bits * h2(args.qber)))
        rounds.append(rep.rounds)
        decoding.append(rep.decoding)
    spf = statistics.median(times)
    ldpc = {}
    if args.method == "ldpc":
        edge_its = sum(d.edge_iterations for d in decoding)
        ldpc = {"decoder_iterations": statistics.fmean(d.iterations for d in decoding),
                "edge_iterations_per_bit": edge_its / (args.bits * args.frames),
                "ns_per_edge_iteration": sum(d.cpu_seconds for d in decoding) / edge_its * 1e9,
                "decode_cpu_share": statistics.median(d.cpu_seconds / c for d, c in zip(decoding, cpu))}
    return {
        "method": args.method, "mode": args.mode if args.method == "cascade" else None,
        "decoder": options.get("decoder", _default_decoder()) if args.method == "ldpc" else None,
        "checks": options.get("checks", CHECKS) if args.method == "cascade" else None,
        "threads": options.get("threads", 1) if args.method == "ldpc" else None,
        "qber": args.qber, "bits": args.bits, "frames": args.frames, "seed": args.seed,
        "efficiency": statistics.fmean(effs), "efficiency_max": max(effs),
        "frame_error_rate": failures / args.frames,
        "rounds": statistics.fmean(rounds), "rounds_max": max(rounds),
        "seconds_per_frame": spf, "mbit_per_s": args.bits / spf / 1e6,
        "cpu_seconds_per_frame": statistics.median(cpu),
        "mbit_per_s_cpu": args.bits / statistics.median(cpu) / 1e6,
        **ldpc, "options": settings,
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
