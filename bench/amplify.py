"""Benchmark of privacy amplification (modified Toeplitz hashing by exact FFT) on one core.

Figures: ``mbit_per_s`` = input bits / median seconds / 1e6 (``--repeats`` runs of
``--bits`` input bits shrunk to ``--ratio`` x input), and ``seconds`` (the median);
``mbit_per_s_cpu`` and ``cpu_seconds`` the same from process CPU time (not inflated
by other jobs on a shared machine).
The output is checked against the explicit matrix product on a small case first.

Run ``qkdnode bench amplify --bits 100000000 --json`` or ``python -m bench.amplify ...``.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench amplify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=10_000_000, help="input key length N")
    parser.add_argument("--ratio", type=float, default=0.5, help="output length / input length")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="accepted for the qkdnode bench convention")
    return parser.parse_args(argv)


def run(argv: list[str]) -> dict:
    """Run the benchmark with command-line style ``argv``; return the figures."""
    from controller.postprocess.amplify import modified_toeplitz_hash, toeplitz_hash_naive

    args = _parse(argv)
    rng = np.random.default_rng(args.seed)
    x = rng.integers(0, 2, 3000, dtype=np.uint8)
    s = rng.integers(0, 2, 2999, dtype=np.uint8)
    want = x[:1200] ^ toeplitz_hash_naive(s, x[1200:], 1200)
    if not np.array_equal(modified_toeplitz_hash(s, x, 1200), want):
        raise RuntimeError("Toeplitz FFT disagrees with the explicit product: refusing to time it")
    m = int(args.bits * args.ratio)
    key = rng.integers(0, 2, args.bits, dtype=np.uint8)
    seed = rng.integers(0, 2, args.bits - 1, dtype=np.uint8)
    times, cpu = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        modified_toeplitz_hash(seed, key, m)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    sec, csec = statistics.median(times), statistics.median(cpu)
    return {"bits": args.bits, "output_bits": m, "repeats": args.repeats, "seed": args.seed,
            "seconds": sec, "mbit_per_s": args.bits / sec / 1e6,
            "cpu_seconds": csec, "mbit_per_s_cpu": args.bits / csec / 1e6}


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
