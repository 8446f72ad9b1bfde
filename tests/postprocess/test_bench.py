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
    for key in ("efficiency", "rounds", "frame_error_rate", "decoder_iterations", "edge_iterations_per_bit"):
        assert one[key] == two[key], key
    for bad, msg in ((["--method", "ldpc", "--threads", "0"], "must be >= 1"), (["--threads", "2"], "ldpc option")):
        with pytest.raises(SystemExit, match=msg):
            bench_reconcile.run(["--bits", "2000", "--frames", "1"] + bad)


def test_bench_reconcile_set_option_and_decoder_figures():
    # --set passes method options through: single LDPC attempts at f_start 1.10 (one round, f just
    # above 1.10 from rounding and the 61-bit tag); the decoder figures follow from the iterations
    # and the code's edges (seed 6)
    from controller.postprocess import ldpc

    out = bench_reconcile.run(["--method", "ldpc", "--qber", "0.05", "--bits", "100000", "--frames", "2",
                               "--seed", "6", "--set", "f_start=1.10", "--set", "steps=0", "--set", "pre=0",
                               "--set", "max_retries=0"])
    assert out["options"] == {"f_start": 1.1, "steps": 0, "pre": 0, "max_retries": 0}
    assert out["rounds"] == 1.0 and out["frame_error_rate"] == 0.0, out
    assert 1.10 <= out["efficiency"] < 1.10 + 0.005, out
    edges = ldpc._edges(ldpc.plan_frame(100000, 0.05, f_start=1.10, steps=0))
    assert out["decoder_iterations"] >= 1
    assert out["edge_iterations_per_bit"] == pytest.approx(out["decoder_iterations"] * edges / 100000)
    assert out["ns_per_edge_iteration"] > 0.0 and 0.0 < out["decode_cpu_share"] <= 1.0
    assert "decoder_iterations" not in bench_reconcile.run(["--bits", "2000", "--frames", "1"])
    for bad, msg in ((["--set", "bogus=1"], "bad option for ldpc: unknown LDPC options"),
                     (["--set", "f_start"], "NAME=VALUE"), (["--set", "threads=2"], "own flag"),
                     (["--set", "f_start=0.5"], "bad option for ldpc: need f_start >= 1")):
        with pytest.raises(SystemExit, match=msg):
            bench_reconcile.run(["--method", "ldpc", "--bits", "2000", "--frames", "1"] + bad)


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
