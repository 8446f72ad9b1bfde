"""The golden tagger model stopped and started mid-run (``TaggerStream.disable``/``enable``), as
``tagger.control.enable`` does on the gateware (``tests/gateware/cocotb_tagger.py``
``test_stop_and_start_mid_run`` checks the behavioural Bob against the RTL bit for bit)."""

import numpy as np
import pytest

from gateware.spec.tagger import CHANNELS
from hil.bfm.detector import poisson
from hil.tagger_model import Item, TaggerConfig, TaggerModel, join_results

SEED = 20261127
N = 2
CFG = TaggerConfig(samples=N, slot_period=10, frame_slots=30, sync_delay=3, gate_start=1,
                   gate_width=7, dead_time=(0, 5, 12, 90))


def light(rng, bins=12_000, rate=0.02):
    clicks = [poisson(rng, rate, 0, bins, N) for _ in range(CHANNELS)]
    syncs = np.arange(11, bins, CFG.frame_bins) + rng.integers(-1, 2, bins // CFG.frame_bins)
    return clicks, syncs


def part(times, lo, hi):
    times = np.asarray(times)
    return times[(times >= lo) & (times < hi)]


def stop_time(rng, clicks, syncs):
    """Return a clock boundary in the middle of the light, just after a channel-0 click that
    leaves an event open there."""
    c = clicks[0][(clicks[0] > 3000) & (clicks[0] < 6000)]
    for click in rng.permutation(c):
        t = int(-(-(int(click) + 1) // N) * N)
        items = TaggerModel(CFG).run([part(c, 0, t) for c in clicks], part(syncs, 0, t)).items
        if ((items["time"] >= t) & (items["kind"] == Item.DETECTION)).any():
            return t
    raise AssertionError("no channel-0 click leaves an event open")


@pytest.mark.parametrize("seed", range(SEED, SEED + 5))
def test_stop_flushes_the_open_event_and_drops_sync(seed):
    rng = np.random.default_rng(seed)
    clicks, syncs = light(rng)
    t = stop_time(rng, clicks, syncs)
    before = [part(c, 0, t) for c in clicks]
    stream = TaggerModel(CFG).stream()
    got = join_results(stream.feed(before, part(syncs, 0, t), t), stream.disable(t))
    # the same light as a whole run that ends at t: every item before t, the events after it
    # (each slot's clicks were all before t) flushed at t, no marker from t on
    ref = TaggerModel(CFG).run(before, part(syncs, 0, t)).items
    late = ref[(ref["time"] >= t) & (ref["kind"] == Item.DETECTION)]
    late["time"] = t
    want = np.concatenate([ref[ref["time"] < t], late])
    assert late.size == 1, f"seed {seed}: no open event at the stop ({late.size})"
    assert np.array_equal(got.items, want), f"seed {seed}"
    assert got.counters["sync_losses"] == int((want["kind"] == Item.SYNC_LOST).sum())
    assert got.counters["events"] == int((want["kind"] == Item.DETECTION).sum())
    assert not stream.enabled and stream.disable().items.size == 0


@pytest.mark.parametrize("seed", range(SEED, SEED + 5))
def test_a_start_is_a_new_run_that_goes_on_numbering_frames(seed):
    """After a start the tagger has forgotten sync and dead time: it tags the light from then
    on as a new run would, ignoring the sync edges of the start's own clock (they meet the
    tagger still stopped), with frame numbers going on from the last frame begun."""
    rng = np.random.default_rng(seed)
    clicks, syncs = light(rng)
    t = stop_time(rng, clicks, syncs)
    t2 = t + N * int(rng.integers(1, CFG.frame_bins // N))   # before the frame would end
    stream = TaggerModel(CFG).stream()
    head = stream.feed([part(c, 0, t) for c in clicks], part(syncs, 0, t), t)
    head = join_results(head, stream.disable(t))
    ignored = stream.feed([part(c, t, t2) for c in clicks], part(syncs, t, t2), t2)
    assert ignored.items.size == 0 and not any(v.any() if isinstance(v, np.ndarray) else v
                                               for v in ignored.counters.values())
    stream.enable(t2)
    after = [part(c, t2, np.inf) for c in clicks]
    tail = stream.feed(after, part(syncs, t2, np.inf), final=True)
    frames = head.items["frame"][head.items["kind"] == Item.SYNC_ACQUIRED]
    fresh = TaggerModel(CFG).run(after, part(syncs, t2 + N - t2 % N, np.inf),
                                 first_frame=head.counters["frames"])
    assert frames.size and fresh.items["frame"].min() == head.counters["frames"], f"seed {seed}"
    assert np.array_equal(tail.items, fresh.items), f"seed {seed}"
    assert tail.items[tail.items["kind"] != Item.DETECTION]["kind"][0] == Item.SYNC_ACQUIRED
    for name, value in fresh.counters.items():
        assert np.array_equal(tail.counters[name], value), f"seed {seed}: {name}"
