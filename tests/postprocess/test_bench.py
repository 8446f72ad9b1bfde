"""The postprocess benchmarks run and report their named figures (no timing asserted)."""

import json
import subprocess
import sys

import pytest

from bench import amplify as bench_amplify
from bench import reconcile as bench_reconcile
from controller.postprocess.infotheory import h2


def test_bench_reconcile_reports_figures():
    out = bench_reconcile.run(["--method", "cascade", "--qber", "0.03", "--bits", "20000",
                               "--frames", "2", "--seed", "3", "--json"])
    for key in ("efficiency", "frame_error_rate", "rounds", "seconds_per_frame", "mbit_per_s"):
        assert key in out
    assert out["frame_error_rate"] == 0.0
    assert 1.0 < out["efficiency"] < 1.2
    assert out["rounds"] > 0 and out["seconds_per_frame"] > 0.0


def test_bench_reconcile_checks_option_sets_the_stopping_rule():
    # --checks C ends each frame after C clean checks (schedule of 2 + C passes): the run with
    # C = 4 is a prefix of the default one on every frame, so it leaks at least 14 check
    # parities fewer per frame (seeded frames: seed 3)
    common = ["--method", "cascade", "--qber", "0.03", "--bits", "20000", "--frames", "2", "--seed", "3"]
    few = bench_reconcile.run(common + ["--checks", "4"])
    full = bench_reconcile.run(common)
    assert few["checks"] == 4 and full["checks"] == 18
    per_frame_bits = (full["efficiency"] - few["efficiency"]) * 20000 * h2(0.03)
    assert per_frame_bits >= 14 - 1e-6, (few, full)
    for bad, msg in ((["--checks", "0"], "must be >= 1"), (["--method", "ldpc", "--checks", "4"], "cascade option")):
        with pytest.raises(SystemExit, match=msg):
            bench_reconcile.run(["--bits", "2000", "--frames", "1"] + bad)


def test_bench_reconcile_threads_option_keeps_the_figures():
    # --threads decodes an LDPC key's frames at once: same f, rounds and failures (seed 4)
    common = ["--method", "ldpc", "--qber", "0.05", "--bits", "250000", "--frames", "1", "--seed", "4"]
    one, two = bench_reconcile.run(common), bench_reconcile.run(common + ["--threads", "2"])
    assert one["threads"] == 1 and two["threads"] == 2
    for key in ("efficiency", "rounds", "frame_error_rate"):
        assert one[key] == two[key], key
    for bad, msg in ((["--method", "ldpc", "--threads", "0"], "must be >= 1"), (["--threads", "2"], "ldpc option")):
        with pytest.raises(SystemExit, match=msg):
            bench_reconcile.run(["--bits", "2000", "--frames", "1"] + bad)


def test_bench_amplify_reports_figures():
    out = bench_amplify.run(["--bits", "50000", "--repeats", "1", "--baseline", "toeplitz"])
    assert out["output_bits"] == 25000 and out["mbit_per_s"] > 0.0
    assert out["method"] == "multiply_shift" and out["seed_bits"] == 2 * 50000 - 25000 - 2
    assert out["baseline"] == "toeplitz" and out["baseline_seed_bits"] == 49999
    assert out["speedup_cpu"] > 0.0 and out["baseline_mbit_per_s_cpu"] > 0.0


def test_bench_reconcile_runs_as_module():
    proc = subprocess.run([sys.executable, "-m", "bench.reconcile", "--bits", "5000", "--frames", "1",
                           "--mode", "low-round", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["mode"] == "low-round"
