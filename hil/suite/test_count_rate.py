"""Bob's count rate follows the attenuator: set the VOA over VISA, count detections per slot."""

import numpy as np
import pytest

from hil.suite.bench import expected_click_probability

STEPS_DB = {"model": [0.0, 3.0, 10.0], "rtl": [0.0, 6.0], "hw": [0.0, 3.0, 10.0]}


def test_rate_follows_attenuation(fresh, target, seed):
    bench = fresh
    measured = []
    for att in STEPS_DB[target]:
        bench.set_attenuation(att)
        run = bench.play()
        assert run.reconcile().ok, run.reconcile().problems
        events = len(run.records) + run.counters["dropped_events"]
        # per slot that carried a choice: a real-time host may underflow Alice's FIFO
        measured.append((att, events / max(int(run.sent["usable"].sum()), 1), run))
    # the rate falls as the loss grows
    rates = [m[1] for m in measured]
    assert all(a > b for a, b in zip(rates, rates[1:])), f"rates {rates} at {STEPS_DB[target]} dB"
    if not bench.simulated:
        # hardware: the rate ratio between the first two settings follows 10^(-dB/10) to 20 %
        # (photon-dominated counts, small mean photon number); dark counts make it larger.
        (a0, r0, _), (a1, r1, _) = measured[:2]
        want = 10 ** (-(a1 - a0) / 10)
        assert 0.8 * want < r1 / r0 < 1.2 * want + 0.05, f"rate ratio {r1 / r0:.3f}, want {want:.3f}"
        return
    optics = bench.testbed.fibre.model
    for att, rate, run in measured:
        bench.set_attenuation(att)
        p = expected_click_probability(optics, run.sent["intensity"])
        want, sigma = p.sum(), np.sqrt((p * (1 - p)).sum())
        got = len(run.records)
        assert abs(got - want) < 5 * sigma + 2, \
            f"{att} dB: {got} detections in {run.slots} slots, expected {want:.1f} +- " \
            f"{sigma:.1f} (seed {seed})"
