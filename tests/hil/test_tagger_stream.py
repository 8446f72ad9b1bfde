"""The tagger model fed in stretches (``TaggerStream``) equals one run over the whole light:
the gateware's sync, dead time and slot merge are continuous, so stretch boundaries must leave
no trace in records, counters or histograms."""

import numpy as np
import pytest

from gateware.spec.tagger import CHANNELS
from hil.tagger_model import Item, TaggerConfig, TaggerModel

SEEDS = range(60)
BINS = 20_000


def random_case(rng):
    """A configuration and light with sync holes, stray sync edges, dense and sparse channels."""
    n = int(rng.choice([1, 2, 4]))
    cfg = TaggerConfig(samples=n, slot_period=int(rng.integers(n, 20)),
                       frame_slots=int(rng.integers(1, 30)), sync_delay=int(rng.integers(0, 30)),
                       gate_start=int(rng.integers(0, 5)), gate_width=int(rng.integers(1, 20)),
                       dead_time=tuple(int(x) for x in rng.integers(0, 60, CHANNELS)),
                       hist_shift=int(rng.integers(0, 2)))
    clicks = [np.unique(rng.integers(0, BINS, rng.integers(0, 800))) for _ in range(CHANNELS)]
    syncs = np.arange(int(rng.integers(0, 50)), BINS, max(1, cfg.frame_bins + int(rng.integers(-3, 4))))
    syncs = syncs[rng.random(syncs.size) > 0.2]
    syncs = np.unique(np.concatenate([syncs, rng.integers(0, BINS, rng.integers(0, 10))]))
    return cfg, clicks, syncs


def fed_in_stretches(cfg, clicks, syncs, cuts, first_frame=0):
    """Feed the light cut at ``cuts`` (bins); return the concatenated words, the summed
    counters and histograms, and the items."""
    stream = TaggerModel(cfg).stream(first_frame)
    bounds = [None, *cuts, None]
    results = []
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        part = [c[((c >= lo) if lo is not None else True) & ((c < hi) if hi is not None else True)]
                for c in [*clicks, syncs]]
        final = hi is None
        # every other stretch says how far its light goes; the others leave the default
        until = hi if (i % 2 == 0 and not final) else None
        results.append(stream.feed(part[:CHANNELS], part[CHANNELS], until, final=final))
    words = np.concatenate([r.words for r in results])
    counters = {k: sum(r.counters[k] for r in results) for k in results[0].counters}
    hist = sum(r.hist for r in results)
    items = np.concatenate([r.items for r in results])
    return words, counters, hist, items


@pytest.mark.parametrize("seed", SEEDS)
def test_stretches_give_the_records_of_one_run(seed):
    rng = np.random.default_rng(seed)
    cfg, clicks, syncs = random_case(rng)
    whole = TaggerModel(cfg).run(clicks, syncs, first_frame=5)
    cuts = np.unique(rng.integers(0, BINS, int(rng.integers(1, 40))))
    words, counters, hist, items = fed_in_stretches(cfg, clicks, syncs, cuts, first_frame=5)
    where = f"seed {seed}, cuts {cuts.tolist()}"
    assert np.array_equal(items, whole.items), where
    assert np.array_equal(words, whole.words), where
    assert np.array_equal(hist, whole.hist), where
    for name, want in whole.counters.items():
        assert np.array_equal(counters[name], want), f"{where}: counter {name}"


@pytest.mark.parametrize("seed", range(10))
def test_sync_lost_and_acquired_once_where_the_sync_stops(seed):
    """A regular sync with one hole of three frames, cut at many points: acquired at the
    start and after the hole, lost at the hole and at the end; no marker at a cut."""
    rng = np.random.default_rng(1000 + seed)
    cfg = TaggerConfig(samples=2, slot_period=8, frame_slots=16)
    syncs = np.arange(100, BINS, cfg.frame_bins)
    hole = syncs[20:23]
    syncs = np.setdiff1d(syncs, hole)
    clicks = [np.unique(rng.integers(0, BINS, 300)) for _ in range(CHANNELS)]
    cuts = np.unique(rng.integers(0, BINS, 30))
    words, counters, hist, items = fed_in_stretches(cfg, clicks, syncs, cuts)
    where = f"seed {1000 + seed}, cuts {cuts.tolist()}"
    assert counters["sync_acquired"] == 2 and counters["sync_losses"] == 2, where
    lost = items["time"][items["kind"] == Item.SYNC_LOST]
    acquired = items["time"][items["kind"] == Item.SYNC_ACQUIRED]
    assert lost.tolist() == [int(syncs[19]) + cfg.frame_bins, int(syncs[-1]) + cfg.frame_bins], where
    assert acquired.tolist() == [int(syncs[0]), int(syncs[20])], where
    assert counters["frames"] == syncs.size, where


def test_light_before_the_last_stretch_is_refused():
    cfg = TaggerConfig(samples=2, slot_period=8, frame_slots=16)
    stream = TaggerModel(cfg).stream()
    stream.feed([[10], [], [], []], [0], until=500)
    with pytest.raises(ValueError, match="time order"):
        stream.feed([[499], [], [], []], [])
    with pytest.raises(ValueError, match="not before until"):
        stream.feed([[600], [], [], []], [], until=600)
    stream.feed([[], [], [], []], [], final=True)
    with pytest.raises(ValueError, match="closed"):
        stream.feed([[], [], [], []], [])
