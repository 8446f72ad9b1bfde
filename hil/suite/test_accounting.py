"""Dead-time and overflow accounting: every click is counted once as dead, out of gate,
accepted or without sync, and the counters reconcile with the records received."""

import numpy as np
import pytest

from bench.tagger import link_limit
from controller.alice import ChoiceSampler
from hil.suite.bench import HilBench
from hil.twin import BAUD

#: Bob's dead time in slots for the test: long enough that a good share of clicks fall in it.
DEAD_SLOTS = 200
#: Light far above the link's record rate on model and rtl: a bench of its own at 0 km with
#: the shortest slots Alice plays (12 M slots/s at 48 MHz) and every pulse a signal pulse;
#: Bob's twin takes 16 frames per stretch (each stretch is followed by a two-frame gap in
#: which his FIFO drains).
FAST = {"distance_km": 0.0, "timebase": {"slot_cycles": 4, "frame_slots": 256},
        "stretch_frames": 16}
BRIGHT = ChoiceSampler(p_x=0.5, p_signal=1.0, p_decoy=0.0, p_vacuum=0.0)
#: Slots of the forced overflow per target (rtl: the twin simulates ~10^5 clocks a second;
#: its FIFO fills within some 10^4 slots of this light).
OVERFLOW_SLOTS = {"model": 200_000, "rtl": 24_000}


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
    if bench.simulated:
        # light well below the link's record rate fits: nothing may drop
        seconds = run.slots / bench.timebase.slot_hz
        offered = (c["events"] + c["frames"]) / seconds
        if offered < 0.5 * link_limit(BAUD)["limit_records_per_s"]:
            assert c["dropped_events"] == c["dropped_markers"] == 0, \
                f"{offered:.0f} records/s offered, below the link's limit, yet drops (seed {seed})"


@pytest.fixture
def fast(request, target, seed):
    """A bench whose light is far above the link's record rate (see FAST): model and rtl start
    their own (Bob's model paced at the twin's baud, Bob's twin with the behavioural Alice);
    hw uses the session bench, VOA at 0 dB, with the bench file's ``[overflow]`` timing
    (``slot_cycles``, ``frame_slots``: light the bench knows to outrun Bob's link) and skips
    without it."""
    if target == "hw":
        hb = request.getfixturevalue("fresh")
        timing = hb.options.get("overflow", {})
        if not timing:
            pytest.skip("the bench file gives no [overflow] slot_cycles/frame_slots whose "
                        "light outruns Bob's link")
        saved = hb.timebase
        from dataclasses import replace
        hb.timebase = replace(saved, **{k: int(v) for k, v in timing.items()
                                         if k in ("slot_cycles", "frame_slots")})
        hb.configure_bob()
        yield hb
        hb.timebase = saved
        return
    hb = HilBench(target, seed=seed, options=dict(FAST)).start()
    try:
        hb.set_attenuation(0.0)
        if hb.detector is not None:
            hb.detector.efficiency_percent = 25     # the instrument's highest setting
        yield hb
    finally:
        hb.stop()


def test_forced_overflow_reconciles(fast, target, seed):
    """VOA at 0 dB, Bob's gate fully open, no dead time, every pulse a signal pulse, short
    slots: the light outruns the link, the event FIFO overflows, and the stream's OVERFLOW
    records, the drop counters and the detections received account for every event."""
    bench = fast
    settings = bench.configure_bob(dead_time=0, gate_start=0,
                                   gate_width=bench.timebase.slot_bins)
    assert settings["gate_width"] == bench.timebase.slot_bins
    run = bench.play(OVERFLOW_SLOTS.get(target), sampler=BRIGHT)
    c = run.counters
    where = f"target {target}, seed {seed}, {run.slots} slots, counters {c}"
    assert len(run.records.gaps) > 0, f"no OVERFLOW record: the FIFO never overflowed ({where})"
    assert c["dropped_events"] > 0, where
    report = run.reconcile()
    assert report.ok, (report.problems, where)
    assert run.records.dropped_events == c["dropped_events"], where
    assert run.records.dropped_markers == c["dropped_markers"], where
    assert len(run.records) + c["dropped_events"] == c["events"], where
    assert len(run.records.markers) + c["dropped_markers"] == c["sync_losses"] + c["sync_acquired"]
    assert sum(c["dead"]) == 0, "dead time 0: no click may fall in a dead time"
    assert sum(c["out_of_gate"]) == 0, "gate open over the whole slot: no click outside it"
