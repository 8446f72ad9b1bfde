"""Dead-time and overflow accounting: every click is counted once as dead, out of gate,
accepted or without sync, and the counters reconcile with the records received."""

import numpy as np

#: Bob's dead time in slots for the test: long enough that a good share of clicks fall in it.
DEAD_SLOTS = 200


def test_dead_time_accounting(fresh, target, seed):
    bench = fresh
    slot_bins = bench.timebase.slot_bins
    dead = min(DEAD_SLOTS * slot_bins, (1 << 16) - 1)
    bench.configure_bob(dead_time=dead)
    run = bench.play()
    c = run.counters
    report = run.reconcile()
    assert report.ok, report.problems
    raw, rejected = np.array(c["raw"]), np.array(c["dead"])
    assert rejected.sum() > 0, f"no click fell in a dead time of {dead} bins: raw {raw.tolist()}"
    # Non-paralysable dead time: of n clicks at rate r per bin, n / (1 + r * dead) pass (time
    # counted over the slots that carried light: a real-time host may underflow Alice's FIFO).
    bins = int(run.sent["usable"].sum()) * slot_bins
    for ch in range(4):
        if raw[ch] < 200:
            continue
        want = raw[ch] / (1 + raw[ch] / bins * dead)
        live = raw[ch] - rejected[ch]
        assert abs(live - want) < 0.1 * want + 5 * np.sqrt(want), \
            f"channel {ch}: {live} of {raw[ch]} clicks outside dead time, expected {want:.0f} " \
            f"(seed {seed})"


def test_counters_reconcile_at_full_rate(fresh, target, seed):
    """At the highest rate the bench makes (VOA at 0 dB), the tagger's counters, the OVERFLOW
    records and the detections received agree, drops included."""
    bench = fresh
    run = bench.play()
    c = run.counters
    report = run.reconcile()
    assert report.ok, report.problems
    assert run.records.dropped_events == c["dropped_events"]
    assert len(run.records) + c["dropped_events"] == c["events"]
    assert c["frames"] >= run.slots // run.frame_slots
    if bench.simulated and target == "model":
        assert c["dropped_events"] == 0, "the behavioural board never drops"
