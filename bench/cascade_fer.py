"""Benchmark of Cascade's frame errors against its stopping rule's model, E[R] 2^-C.

Bob ends a frame after C BICONF checks begun after his last correction (standard mode); a
residual error pattern passes each with probability 1/2, so a frame ends with errors with
probability E[R] 2^-C, R the runs of checks begun with errors left in it (a run begins at the
first check Bob starts after a correction, or at his first check).  This runs exactly the
frames and Cascade seeds of ``qkdnode bench reconcile --method cascade --qber Q --bits N
--frames K --seed S --checks C`` (same draws, same failures and f) and watches Bob's check
starts through ``CascadeBob``'s ``observer``.

Figures (over ``--frames`` K frames of ``--bits`` N bits with i.i.d. errors at ``--qber``):

* ``failures``, ``frame_error_rate``: frames where Bob's corrected key differs from Alice's;
  ``failed_frames``: their numbers (0 = the first frame after the warm-up).
* ``efficiency``: mean f = leaked / (N h(Q)), the leak read from the channel meter.
* ``expected_runs``: E[R], the mean over frames of R (Bob's key compared with Alice's when
  each run begins).
* ``resid``: the fraction of frames whose first check begins with errors left.
* ``predicted_failures``: E[R] 2^-C K, the failures the model predicts on these frames.
* ``p_at_most``, ``p_at_least``: P(X <= failures) and P(X >= failures) for X Poisson with
  mean ``predicted_failures``.
* ``fewer_checks``: the same five figures (``checks`` c, ``failures``, ``expected_runs``,
  ``predicted_failures``, ``p_at_most``, ``p_at_least``) for every c < C, read from this run:
  until c even checks in a row a frame takes the same steps with c and with C checks (same
  pass seeds and subsets), so it fails with c iff a run begun with errors has c even checks
  first, and its R with c counts the runs up to that one.
* ``even_by_depth``: for the runs begun with errors, per depth d = 0..C-1 (the even checks
  already seen in the run), ``[checks, even]``: the checks started at that depth and how
  many were even (a fair coin at every depth if the checks' subsets are independent).
* ``seconds_per_frame``, ``cpu_seconds_per_frame``: median wall and process CPU time of a
  frame (both parties and the watching, one thread).
* ``load_average``: the 1-minute load average at the start and the end of the run.

Run ``qkdnode bench cascade_fer --qber 0.02 --bits 10000 --frames 200 --seed 7 --checks 4
--json`` or ``python -m bench.cascade_fer ...``; docs/BENCHMARKS.md ("Cascade, standard mode").
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def _parse(argv):
    from controller.postprocess.cascade import CHECKS, MAX_PASSES

    parser = argparse.ArgumentParser(prog="qkdnode bench cascade_fer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--qber", type=float, default=0.02, help="bit error rate of the frames")
    parser.add_argument("--bits", type=int, default=10_000, help="frame length N")
    parser.add_argument("--frames", type=int, default=200, help="number of frames K")
    parser.add_argument("--seed", type=int, default=1, help="seed of keys, errors and permutations")
    parser.add_argument("--checks", type=int, default=CHECKS,
                        help=f"clean checks C that end a frame (schedule of 2 + C passes; default {CHECKS})")
    parser.add_argument("--json", action="store_true", help="accepted for the qkdnode bench convention")
    args = parser.parse_args(argv)
    # parser.error prints the message and exits 2, as argparse does for its own checks
    if not 0.0 < args.qber < 0.5:
        parser.error(f"--qber must be in (0, 0.5), got {args.qber}")
    if args.bits < 2:
        parser.error(f"--bits must be >= 2, got {args.bits}")
    if args.frames < 1:
        parser.error(f"--frames must be >= 1, got {args.frames}")
    if not 1 <= args.checks <= MAX_PASSES - 2:
        parser.error(f"--checks must be 1..{MAX_PASSES - 2} (a schedule of 2 + C <= {MAX_PASSES} "
                     f"passes), got {args.checks}")
    return args


class _Watch:
    """One frame's check starts, seen by CascadeBob's observer: for each run of checks begun
    with errors left, the even checks in it (the last run's: so far)."""

    def __init__(self, alice: np.ndarray):
        self.alice = alice
        self.bob = None
        self.flips = None           # Bob's corrections when the last check started
        self.runs: list[int] = []   # even checks of each run begun with errors
        self.open = False           # the current run began with errors
        self.resid = False          # the first run did
        self.censored = False       # the frame ended in a run begun with errors, no odd check in it

    def __call__(self, bob, first: int, last: int) -> None:
        self.bob = bob
        for p in range(first, last):
            if bob.check[p]:
                self._check_starts(int(bob.started[1]), bob.y)

    def _check_starts(self, flips: int, y: np.ndarray) -> None:
        if self.flips is not None and flips == self.flips:      # the last check was even
            if self.open:
                self.runs[-1] += 1
            return
        first = self.flips is None                   # else the last check was odd: a new run
        self.flips = flips
        self.open = not np.array_equal(y, self.alice)
        if self.open:
            self.runs.append(0)
        if first:
            self.resid = self.open

    def finish(self, failed: bool) -> None:
        """Count the frame's last check; raise RuntimeError if the watch and the outcome disagree
        (a run begun without errors cannot end with them, nor one with errors and no correction
        end without them)."""
        if self.bob is None:
            raise RuntimeError("Bob started no check: the observer was not called")
        quiet = int(self.bob.started[1]) == self.flips          # no correction since the last check
        self.censored = self.open and quiet
        if self.censored:
            self.runs[-1] += 1
        if (self.open and quiet and not failed) or (not self.open and failed):
            raise RuntimeError(f"watch out of step: last run begun with errors {self.open}, "
                               f"corrected since {not quiet}, frame failed {failed}")


def _poisson(seen: int, mean: float) -> tuple[float, float]:
    from scipy.stats import poisson
    return float(poisson.cdf(seen, mean)), float(poisson.sf(seen - 1, mean))


def _model(c: int, runs: list[list[int]]) -> dict:
    # failures and E[R] with c clean checks, from the even-check counts of each frame's runs
    failures, total = 0, 0
    for frame in runs:
        hit = next((i for i, even in enumerate(frame) if even >= c), None)
        failures += hit is not None
        total += len(frame) if hit is None else hit + 1
    er = total / len(runs)
    predicted = er * 2.0 ** -c * len(runs)
    low, high = _poisson(failures, predicted)
    return {"checks": c, "failures": failures, "expected_runs": er, "predicted_failures": predicted,
            "p_at_most": low, "p_at_least": high}


def run(argv: list[str]) -> dict:
    """Run the benchmark with command-line style ``argv``; return the figures."""
    from bench.reconcile import WARM_BITS, draw, frame_seed
    from controller.postprocess.infotheory import h2
    from controller.postprocess.reconcile import reconcile

    args = _parse(argv)
    c = args.checks
    options = {"mode": "standard", "checks": c, "passes": 2 + c}    # as bench reconcile --checks C
    rng = np.random.default_rng(args.seed)
    reconcile(*draw(rng, WARM_BITS, args.qber), args.qber, "cascade", seed=0, **options)
    load_start = os.getloadavg()[0]
    effs, times, cpu, runs, resid, failed_frames = [], [], [], [], 0, []
    depth = np.zeros((2, c), dtype=np.int64)        # checks, even ones, per depth in runs with errors
    for frame in range(args.frames):
        a, b = draw(rng, args.bits, args.qber)
        watch = _Watch(a)
        t0, c0 = time.perf_counter(), time.process_time()
        fixed, rep = reconcile(a, b, args.qber, "cascade", seed=frame_seed(args.seed, frame),
                               observer=watch, **options)
        failed = not np.array_equal(fixed, a)
        watch.finish(failed)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        if failed:
            failed_frames.append(frame)
        resid += watch.resid
        effs.append(rep.leaked_bits / (args.bits * h2(args.qber)))
        runs.append(watch.runs)
        for i, even in enumerate(watch.runs):     # each run ends with an odd check, but a censored one
            depth[0, :min(even + (i < len(watch.runs) - 1 or not watch.censored), c)] += 1
            depth[1, :min(even, c)] += 1
    model = _model(c, runs)
    failures = len(failed_frames)
    if model["failures"] != failures:
        raise RuntimeError(f"{failures} failures but {model['failures']} runs of {c} even checks begun with errors")
    return {
        "method": "cascade", "mode": "standard", "checks": c,
        "qber": args.qber, "bits": args.bits, "frames": args.frames, "seed": args.seed,
        "failures": failures, "frame_error_rate": failures / args.frames, "failed_frames": failed_frames,
        "efficiency": statistics.fmean(effs),
        "expected_runs": model["expected_runs"], "resid": resid / args.frames,
        "predicted_failures": model["predicted_failures"],
        "p_at_most": model["p_at_most"], "p_at_least": model["p_at_least"],
        "fewer_checks": [_model(d, runs) for d in range(1, c)],
        "even_by_depth": depth.T.tolist(),
        "seconds_per_frame": statistics.median(times), "cpu_seconds_per_frame": statistics.median(cpu),
        "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
    }


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1:])))
