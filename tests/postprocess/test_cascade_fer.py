"""bench/cascade_fer.py: the frames of bench reconcile, and E[R] / resid against an independent count;
CascadeBob's observer changes nothing."""

import json
import subprocess
import sys

import numpy as np
import pytest

from bench import cascade_fer
from bench import reconcile as bench_reconcile
from controller.postprocess.cascade import cascade
from controller.postprocess.channel import LocalChannel
from controller.postprocess.reconcile import reconcile


def _args(seed, frames, checks, bits=10_000, qber=0.02):
    return ["--qber", str(qber), "--bits", str(bits), "--frames", str(frames), "--seed", str(seed),
            "--checks", str(checks)]


@pytest.mark.parametrize("seed, bits, frames, checks", [(7, 10_000, 60, 4), (3, 4000, 8, 18)])
def test_cascade_fer_runs_the_frames_of_bench_reconcile(seed, bits, frames, checks):
    # same rng draws and Cascade seeds: the same failures and f, frame for frame summed
    fer = cascade_fer.run(_args(seed, frames, checks, bits))
    ref = bench_reconcile.run(["--method", "cascade"] + _args(seed, frames, checks, bits))
    assert fer["failures"] == round(ref["frame_error_rate"] * frames), f"seed {seed}: {fer} {ref}"
    assert fer["efficiency"] == ref["efficiency"], f"seed {seed}"
    if checks == 4:
        assert fer["failures"] > 0, f"seed {seed}: no failure at 4 checks, the comparison proves little"
    if checks == 18:       # the default: the same as bench reconcile without --checks
        default = bench_reconcile.run(["--method", "cascade", "--qber", "0.02", "--bits", str(bits),
                                       "--frames", str(frames), "--seed", str(seed)])
        assert fer["efficiency"] == default["efficiency"], f"seed {seed}"


def test_cascade_fer_runs_agree_with_an_independent_count():
    # Counted from Bob's record after each frame, not from his key at the check starts: Bob
    # corrects only when errors are left, so every run of checks but the frame's last began
    # with errors, and the last did iff the frame failed.  R = runs - 1 + failed; a run with
    # an odd check ends with it (its even checks: its length - 1), a last run begun with
    # errors has only even ones.
    seed, frames, c = 11, 80, 4
    out = cascade_fer.run(_args(seed, frames, c))
    rng = np.random.default_rng(seed)
    reconcile(*bench_reconcile.draw(rng, bench_reconcile.WARM_BITS, 0.02), 0.02, "cascade", seed=0)
    total_r = resid = failures = 0
    failed_frames = []
    depth = np.zeros((c, 2), dtype=np.int64)
    for frame in range(frames):
        a, b = bench_reconcile.draw(rng, 10_000, 0.02)
        seen = []
        fixed, _ = reconcile(a, b, 0.02, "cascade", seed=bench_reconcile.frame_seed(seed, frame),
                             checks=c, passes=2 + c, observer=lambda bob, first, last: seen.append(bob))
        bob = seen[0]
        failed = not np.array_equal(fixed, a)
        starts = [bob.flips_at_start[p] for p in range(len(bob.check)) if bob.check[p]]
        assert -1 not in starts, f"seed {seed} frame {frame}: a check never started"
        lengths = []
        for i, f in enumerate(starts):
            if i and f == starts[i - 1]:
                lengths[-1] += 1
            else:
                lengths.append(1)
        dirty = lengths[:-1] + (lengths[-1:] if failed else [])
        total_r += len(dirty)
        resid += len(lengths) > 1 or failed
        failures += failed
        if failed:
            failed_frames.append(frame)
        for i, n in enumerate(dirty):
            odd = not (failed and i == len(dirty) - 1)
            even = n - odd
            depth[:even + odd, 0] += 1
            depth[:even, 1] += 1
        assert not failed or lengths[-1] == c, f"seed {seed} frame {frame}: failed after {lengths[-1]} checks"
    assert out["failures"] == failures and failures > 0, f"seed {seed}"
    assert out["failed_frames"] == failed_frames, f"seed {seed}"
    assert out["expected_runs"] == pytest.approx(total_r / frames, abs=1e-12), f"seed {seed}"
    assert out["resid"] == pytest.approx(resid / frames, abs=1e-12), f"seed {seed}"
    assert out["even_by_depth"] == depth.tolist(), f"seed {seed}"
    assert out["predicted_failures"] == pytest.approx(total_r * 2.0 ** -c), f"seed {seed}"
    assert 0.0 < out["p_at_most"] <= 1.0 and 0.0 < out["p_at_least"] <= 1.0
    assert out["p_at_most"] + out["p_at_least"] >= 1.0, f"seed {seed}"


def test_cascade_fer_reads_fewer_checks_as_direct_runs():
    # a frame takes the same steps with c and with C > c checks until c even checks in a row:
    # the failures and E[R] read at c from a 6-check run are those of a 3- and a 4-check run
    seed, frames = 7, 100
    deep = cascade_fer.run(_args(seed, frames, 6))
    assert [x["checks"] for x in deep["fewer_checks"]] == [1, 2, 3, 4, 5]
    for c in (3, 4):
        direct = cascade_fer.run(_args(seed, frames, c))
        read = deep["fewer_checks"][c - 1]
        for key in ("failures", "expected_runs", "predicted_failures", "p_at_most", "p_at_least"):
            assert read[key] == pytest.approx(direct[key], abs=1e-12), f"seed {seed} checks {c} {key}"
        assert direct["resid"] == deep["resid"], f"seed {seed}"
    assert deep["fewer_checks"][2]["failures"] > deep["failures"], f"seed {seed}"


@pytest.mark.parametrize("bad, message", [
    (["--qber", "0"], "--qber must be in"), (["--qber", "0.5"], "--qber must be in"),
    (["--bits", "1"], "--bits must be >= 2"), (["--frames", "0"], "--frames must be >= 1"),
    (["--checks", "0"], "--checks must be 1..62"), (["--checks", "63"], "--checks must be 1..62"),
])
def test_cascade_fer_rejects_bad_arguments(bad, message, capsys):
    with pytest.raises(SystemExit) as exc:
        cascade_fer.run(["--bits", "2000", "--frames", "1"] + bad)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_cascade_fer_runs_as_module_and_as_qkdnode_bench():
    from controller.cli import available_benches

    assert "cascade_fer" in available_benches()
    proc = subprocess.run([sys.executable, "-m", "bench.cascade_fer", "--bits", "3000", "--frames", "2",
                           "--checks", "5", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["checks"] == 5 and out["frames"] == 2 and len(out["even_by_depth"]) == 5
    # through qkdnode bench, a bad argument is explained on stderr, exit status 2
    qkdnode = [sys.executable, "-m", "controller.cli"]
    proc = subprocess.run(qkdnode + ["bench", "cascade_fer", "--frames", "0", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "--frames must be >= 1" in proc.stderr, (proc.stdout, proc.stderr)


@pytest.mark.parametrize("n, qber, mode", [(10_000, 0.02, "standard"), (10_000, 0.05, "low-round"),
                                           (300_000, 0.02, "standard")])
def test_cascade_observer_changes_nothing(n, qber, mode):
    # keys, leak, rounds, messages and wire bits with and without a watcher of every stage
    # (seeds 60..); the watcher sees every pass start once, in order.  Bob keeps his uncorrected
    # key (y0) only for the one-bit lookups: standard mode below ORDERED_BELOW bits
    from controller.postprocess.cascade import ORDERED_BELOW
    for seed in range(60, 62 if n < 100_000 else 61):
        rng = np.random.default_rng(seed)
        a = rng.integers(0, 2, n, dtype=np.uint8)
        b = a ^ (rng.random(n) < qber).astype(np.uint8)
        runs = []
        for watch in (False, True):
            ch, stages, bobs = LocalChannel(), [], []

            def observer(bob, first, last):
                stages.append((first, last, int(bob.started[1])))
                bobs.append(bob)
            observer = observer if watch else None
            y = cascade(a, b, qber, ch, seed=seed, mode=mode, observer=observer)
            s = ch.stats
            runs.append((y, s.leaked_bits, s.rounds, s.messages, s.bits))
        assert np.array_equal(runs[0][0], runs[1][0]) and runs[0][1:] == runs[1][1:], f"seed {seed} {mode} {n}"
        passes = [p for first, last, _ in stages for p in range(first, last)]
        assert passes == list(range(len(passes))) and len(passes) >= 20, f"seed {seed} {mode} {n}"
        flips = [f for _, _, f in stages]
        assert flips == sorted(flips), f"seed {seed} {mode} {n}"
        lookups = mode == "standard" and n < ORDERED_BELOW
        assert (bobs[0].y0 is not None) == lookups, f"seed {seed} {mode} {n}"
        if lookups:
            assert np.array_equal(bobs[0].y0, b), f"seed {seed}"
