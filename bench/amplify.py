"""Benchmark of privacy amplification (multiply-add-shift or modified Toeplitz hashing) on one core.

Figures: ``mbit_per_s`` = input bits / median seconds / 1e6 (``--repeats`` runs of
``--bits`` input bits shrunk to ``--ratio`` x input by ``--method``), and ``seconds``
(the median); ``mbit_per_s_cpu`` and ``cpu_seconds`` the same from process CPU time
(not inflated by other jobs on a shared machine); ``seed_bits`` the public seed length.
``--baseline toeplitz`` also times that method on the same key and reports its figures
under ``baseline_*`` and ``speedup_cpu`` = baseline CPU seconds / CPU seconds.
Every timed method is first checked against its direct computation (plain Python
integers, or the explicit Toeplitz matrix) on small cases; on a mismatch nothing is timed.

Run ``qkdnode bench amplify --bits 100000000 --json`` or ``python -m bench.amplify ...``.
"""

import argparse
import json
import statistics
import sys
import time

import numpy as np

METHODS = ("multiply_shift", "toeplitz")


def _parse(argv):
    parser = argparse.ArgumentParser(prog="qkdnode bench amplify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=10_000_000, help="input key length N")
    parser.add_argument("--ratio", type=float, default=0.5, help="output length / input length")
    parser.add_argument("--method", choices=METHODS, default="multiply_shift")
    parser.add_argument("--baseline", choices=METHODS, default=None,
                        help="also time this method on the same key and report the CPU-time ratio")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="accepted for the qkdnode bench convention")
    args = parser.parse_args(argv)
    if args.bits < 2 or not 0.0 < args.ratio < 1.0 or args.repeats < 1:
        parser.error("need --bits >= 2, 0 < --ratio < 1 and --repeats >= 1")
    return args


def _check(method: str, rng: np.random.Generator) -> None:
    from controller.postprocess.amplify import (hash_key, multiply_shift_hash_naive, seed_bits_needed,
                                                toeplitz_hash_naive)

    for n, m in ((3000, 1200), (1001, 1000), (257, 1)):
        x = rng.integers(0, 2, n, dtype=np.uint8)
        s = rng.integers(0, 2, seed_bits_needed(n, m, method), dtype=np.uint8)
        if method == "toeplitz":
            want = x[:m] ^ toeplitz_hash_naive(s, x[m:], m)
        else:
            want = multiply_shift_hash_naive(s, x, m)
        if not np.array_equal(hash_key(s, x, m, method), want):
            raise RuntimeError(f"{method} hash disagrees with its direct computation at n {n}, m {m}: "
                               "refusing to time it")


def _time(method: str, key: np.ndarray, m: int, repeats: int, rng: np.random.Generator) -> dict:
    from controller.postprocess.amplify import hash_key, seed_bits_needed

    seed = rng.integers(0, 2, seed_bits_needed(key.size, m, method), dtype=np.uint8)
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        hash_key(seed, key, m, method)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    sec, csec = statistics.median(times), statistics.median(cpu)
    return {"seed_bits": int(seed.size), "seconds": sec, "mbit_per_s": key.size / sec / 1e6,
            "cpu_seconds": csec, "mbit_per_s_cpu": key.size / csec / 1e6}


def run(argv: list[str]) -> dict:
    """Run the benchmark with command-line style ``argv``; return the figures."""
    args = _parse(argv)
    rng = np.random.default_rng(args.seed)
    methods = [args.method] + ([args.baseline] if args.baseline else [])
    for method in methods:
        _check(method, rng)
    m = int(args.bits * args.ratio)
    key = rng.integers(0, 2, args.bits, dtype=np.uint8)
    out = {"bits": args.bits, "output_bits": m, "method": args.method, "repeats": args.repeats,
           "seed": args.seed, **_time(args.method, key, m, args.repeats, rng)}
    if args.baseline:
        base = _time(args.baseline, key, m, args.repeats, rng)
        out["baseline"] = args.baseline
        out.update({f"baseline_{k}": v for k, v in base.items()})
        out["speedup_cpu"] = base["cpu_seconds"] / out["cpu_seconds"]
    return out


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
