"""The optics benchmark's contract: ``run(argv) -> dict`` with the documented figures (no timing asserts)."""

from bench import optics


def test_bench_optics_small_run():
    out = optics.run(["--slots", "2e6", "--explicit-slots", "1e6", "--length-km", "50"])
    assert out["slots"] == 2_000_000 and out["explicit_slots"] == 1_000_000
    assert "seconds_for_run" in out and "seconds_for_1e9_slots_25km" not in out
    assert out["clicks"] > 0 and 0 < out["clicks_per_slot"] < 0.01
    for key in ("slots_per_s", "explicit_model_slots_per_s", "choice_arrays_slots_per_s"):
        assert out[key] > 0
