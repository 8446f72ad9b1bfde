"""Gate calibration from the phase histogram: find the photons' phase, gate on it, check that
the gate keeps the photons and a gate elsewhere rejects them (counted as out of gate). Runs on
a Bob with hardware histograms and on one without (the iCEBreaker's tagger)."""

import numpy as np


def test_gate_from_phase_histogram(fresh_hist, target, seed):
    """On a Bob with hardware histograms and on one without (``fresh_hist``): there the host
    builds them from the DETECTION records, one count per detection at its phase, which with
    the gate open is the photons' phase too."""
    bench = fresh_hist
    settings = bench.configure_bob()
    shift, slot_bins = settings["hist_shift"], settings["slot_period"]
    run = bench.play()
    hist = run.hist.sum(axis=0)
    assert hist.sum() > 100, f"only {hist.sum()} clicks in the histograms (seed {seed})"
    peak = int(np.argmax(hist))
    assert hist[peak] > 0.5 * hist.sum(), f"no clear photon peak in {hist.tolist()}"
    if bench.simulated:
        assert peak == bench.testbed.fibre.photon_phase_bins >> shift, \
            f"peak in bin {peak}, the fibre puts photons at phase " \
            f"{bench.testbed.fibre.photon_phase_bins} (>> {shift})"

    # Gate on the peak's phases: the photon clicks stay.
    start, width = peak << shift, 1 << shift
    bench.configure_bob(gate_start=start, gate_width=width)
    on = bench.play()
    c = on.counters
    in_gate, out = sum(c["accepted"]), sum(c["out_of_gate"])
    assert on.reconcile().ok, on.reconcile().problems
    assert in_gate > 0.95 * (in_gate + out), f"gate [{start}, {start + width}): {in_gate} in, {out} out"

    # A gate half a slot away rejects them, every one counted.
    away = (start + slot_bins // 2) % slot_bins
    bench.configure_bob(gate_start=away, gate_width=width)
    off = bench.play()
    c = off.counters
    in_gate, out = sum(c["accepted"]), sum(c["out_of_gate"])
    assert off.reconcile().ok, off.reconcile().problems
    assert out > 0.95 * (in_gate + out), f"gate at {away}: {in_gate} in, {out} out"
    assert len(off.records) == c["events"] - c["dropped_events"]
