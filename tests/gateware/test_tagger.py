"""Amaranth-simulator tests of the tagger core against the golden model, and of its pieces.

Short runs (a few thousand clocks): the long randomised comparisons run on Verilator
(``test_tagger_cocotb.py``). Seeds are in the test ids.
"""

import numpy as np
import pytest

from gateware.cores.tagger import Tagger
from gateware.cores.tagger_records import ITEMS, ItemQueue
from gateware.spec.tagger import CHANNELS, HIST_BINS
from hil.bfm.detector import pulse_vectors, poisson
from hil.tagger_model import TaggerConfig, TaggerModel

from gwsim import run


def simulate(cfg, clicks, syncs, clocks, *, fifo_words=1024, ready=None, **tagger_args):
    """Run a Tagger on the pulses and return (words, counters, hist) read from its ports; the
    ``hist`` register's elements in map order (CHANNELS x HIST_BINS) and ``info``."""
    dut = Tagger(cfg.samples, fifo_words=fifo_words, **tagger_args)
    det = [pulse_vectors(c, cfg.samples) for c in clicks]
    sync = pulse_vectors(syncs, cfg.samples)
    words, result = [], {}

    async def drive(ctx):
        ctx.set(dut.slot_period, cfg.slot_period)
        ctx.set(dut.frame_slots, cfg.frame_slots)
        ctx.set(dut.sync_delay, cfg.sync_delay)
        ctx.set(dut.gate.start, cfg.gate_start)
        ctx.set(dut.gate.width, cfg.gate_width)
        ctx.set(dut.hist_shift, cfg.hist_shift)
        for ch in range(CHANNELS):
            ctx.set(dut.dead_time[ch], cfg.dead_time[ch])
        ctx.set(dut.control.enable, 1)
        await ctx.tick().repeat(4)
        for c in range(clocks):
            for ch in range(CHANNELS):
                ctx.set(dut.det[ch], det[ch].get(c, 0))
            ctx.set(dut.sync, sync.get(c, 0))
            await ctx.tick()
        await ctx.tick().repeat(40)
        for name in ("raw", "dead", "out_of_gate", "accepted"):
            result[name] = np.array([ctx.get(getattr(dut, name)[ch]) for ch in range(CHANNELS)])
        for name in ("events", "dropped_events", "dropped_markers", "frames", "sync_losses",
                     "sync_acquired", "no_sync"):
            result[name] = ctx.get(getattr(dut, name))
        hist = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        for a in range(CHANNELS * HIST_BINS):
            ctx.set(dut.hist__addr, a)
            await ctx.tick()
            hist[a // HIST_BINS, a % HIST_BINS] = ctx.get(dut.hist__data)
        result["hist"] = hist
        result["info"] = {name: int(ctx.get(getattr(dut.info, name)))
                          for name in ("samples", "channels", "hist_bins", "fifo_words_div16")}

    async def sink_sampled(ctx):
        # Sample valid/payload before the edge that takes the word.
        c = 0
        while True:
            go = 1 if ready is None else ready(c)
            ctx.set(dut.o_records.ready, go)
            valid, payload = ctx.get(dut.o_records.valid), ctx.get(dut.o_records.payload)
            if go and valid:
                words.append(payload)
            await ctx.tick()
            c += 1

    run(dut, drive, background=[sink_sampled], deadline_cycles=clocks + 1000, name="tagger")
    return np.array(words, dtype=np.uint32), result


def stimulus(seed, cfg, clocks, rate=0.02, sync_period=None, sync_stop=None):
    rng = np.random.default_rng(seed)
    bins = clocks * cfg.samples
    clicks = [poisson(rng, rate, 40, bins - 40, cfg.samples) for _ in range(CHANNELS)]
    period = sync_period or cfg.frame_bins
    stop = sync_stop or bins - 2 * cfg.frame_bins
    syncs = np.arange(30 + int(rng.integers(0, cfg.samples)), stop, period)
    return clicks, syncs


def check(cfg, clicks, syncs, clocks, hist_bins=HIST_BINS, **tagger_args):
    words, got = simulate(cfg, clicks, syncs, clocks, hist_bins=hist_bins, **tagger_args)
    want = TaggerModel(cfg).run(clicks, syncs)
    for name, value in want.counters.items():
        assert np.array_equal(np.asarray(got[name]), np.asarray(value)), \
            f"counter {name}: gateware {got[name]}, model {value}"
    # ``hist_bins`` bins per channel at elements ch * hist_bins + bin, the rest of the map 0.
    served = np.zeros(CHANNELS * HIST_BINS, dtype=np.int64)
    served[:CHANNELS * hist_bins] = want.hist[:, :hist_bins].ravel()
    assert np.array_equal(got["hist"].ravel(), served), "phase histograms differ"
    assert got["info"]["hist_bins"] == hist_bins
    assert len(words) == len(want.words) and np.array_equal(words, want.words), \
        f"records differ:\n gw    {[hex(w) for w in words[:40]]}\n model {[hex(w) for w in want.words[:40]]}"
    return want


@pytest.mark.parametrize("samples,seed", [(1, 1), (2, 2), (4, 3)])
def test_matches_model_poisson(samples, seed):
    cfg = TaggerConfig(samples=samples, slot_period=max(5, samples), frame_slots=7,
                       sync_delay=3, gate_start=1, gate_width=3, dead_time=(0, 3, 9, 1),
                       hist_shift=0)
    clocks = 900
    clicks, syncs = stimulus(seed, cfg, clocks, rate=0.08,
                             sync_period=cfg.frame_bins - 2)
    # A gap in the sync: the frame ends, sync is lost, then re-acquired.
    syncs = syncs[(syncs < 300 * samples) | (syncs > 420 * samples)]
    want = check(cfg, clicks, syncs, clocks)
    assert want.counters["sync_losses"] >= 2 and want.counters["events"] > 20


@pytest.mark.parametrize("hist_bins,queue_memory,seed", [(0, True, 4), (8, False, 5),
                                                         (16, True, 6)])
def test_board_parameters_keep_the_records(hist_bins, queue_memory, seed):
    """The per-board TaggerParams: fewer or no histogram bins, the item queue in block RAM
    (``BlockFIFO``): the same records and counters as the model, the histograms as served."""
    cfg = TaggerConfig(samples=2, slot_period=7, frame_slots=9, sync_delay=5, gate_start=2,
                       gate_width=4, dead_time=(0, 2, 7, 1), hist_shift=0)
    clocks = 900
    clicks, syncs = stimulus(seed, cfg, clocks, rate=0.08, sync_period=cfg.frame_bins - 2)
    want = check(cfg, clicks, syncs, clocks, hist_bins=hist_bins, queue_memory=queue_memory)
    assert want.counters["events"] > 20, f"seed {seed}"


@pytest.mark.parametrize("samples", [2, 4])
def test_slot_equals_clock_with_offset_origin(samples):
    """slot_period == samples: every clock holds two slots; origins mid-clock."""
    cfg = TaggerConfig(samples=samples, slot_period=samples, frame_slots=12, sync_delay=1,
                       dead_time=(0, 0, 2, 5))
    clicks, syncs = stimulus(10 + samples, cfg, 600, rate=0.06 / samples, sync_period=cfg.frame_bins + 1)
    check(cfg, clicks, syncs, 600)


def test_simultaneous_clicks_merge():
    cfg = TaggerConfig(samples=2, slot_period=6, frame_slots=4)
    syncs = np.array([20])
    base = np.array([21, 27, 33])
    clicks = [base, base + 1, base + 2, np.array([27])]
    want = check(cfg, clicks, syncs, 120)
    det = want.items[want.items["kind"] == 0]
    assert list(det["mask"]) == [0b0111, 0b1111, 0b0111]
    assert list(det["phase"]) == [1, 1, 1]


def test_item_queue_counts_and_carries_drops():
    """A one-group queue that is not read: the first clock's items are kept, the next clock's are
    dropped whole and counted, and once the queue drains the gap goes out in a group of its own
    (no valid item). The flags the record writer decides on are worked out on the way in."""
    dut = ItemQueue(depth=1)
    seen = {}

    def offer(ctx, valids, slot):
        for k in range(ITEMS):
            ctx.set(dut.i_valid[k], valids[k])
            ctx.set(dut.i_item[k].slot, slot + (1 if k == 2 else 0))
            ctx.set(dut.i_item[k].frame, 7 + (1 if k == 3 else 0))
            ctx.set(dut.i_item[k].mask, 1 << k)

    async def bench(ctx):
        offer(ctx, (0, 1, 0, 0), 10)
        await ctx.tick()
        offer(ctx, (1, 0, 1, 1), 20)
        seen["drops"] = (ctx.get(dut.drop_events), ctx.get(dut.drop_markers))
        await ctx.tick()
        offer(ctx, (0, 0, 0, 0), 0)
        ctx.set(dut.o_stream.ready, 1)
        out = []
        for _ in range(4):
            if ctx.get(dut.o_stream.valid):
                g = ctx.get(dut.o_stream.payload)
                out.append({name: int(getattr(g, name)) for name in (
                    "valid", "frame", "slot", "slot_next", "frame_next", "mask_a", "mask_b",
                    "gap_events", "gap_markers", "has_gap", "first_at", "empty", "single")})
            await ctx.tick()
        seen["out"] = out

    run(dut, bench, name="item_queue")
    assert seen["drops"] == (2, 1)
    kept, gap = seen["out"]
    assert kept == {"valid": 0b0010, "frame": 7, "slot": 10, "slot_next": 11, "frame_next": 8,
                    "mask_a": 0b0001, "mask_b": 0b0100, "gap_events": 0, "gap_markers": 0,
                    "has_gap": 0, "first_at": 0b0010, "empty": 0, "single": 1}
    assert (gap["valid"], gap["gap_events"], gap["gap_markers"], gap["has_gap"], gap["empty"],
            gap["single"], gap["first_at"]) == (0, 2, 1, 1, 1, 1, 0)


@pytest.mark.parametrize("queue_memory", [False, True])
def test_overload_accounts_for_every_detection(queue_memory):
    """A sink slower than the clicks: the item queue (in flip-flops or ``BlockFIFO``) drops, and
    counters, OVERFLOW records and detections received reconcile."""
    from controller.tagger import decode, reconcile
    seed = 7
    cfg = TaggerConfig(samples=2, slot_period=4, frame_slots=50, sync_delay=1,
                       dead_time=(0, 0, 0, 0))
    clocks = 700
    clicks, syncs = stimulus(seed, cfg, clocks, rate=0.2, sync_period=cfg.frame_bins)
    words, got = simulate(cfg, clicks, syncs, clocks, fifo_words=16, hist_bins=0,
                          queue_memory=queue_memory, ready=lambda c: c % 4 == 0)
    records = decode(words)
    counters = {k: (list(v) if np.ndim(v) else int(v)) for k, v in got.items()
                if k not in ("hist", "info")}
    assert counters["dropped_events"] > 20, f"seed {seed}: the sink did not slow the tagger"
    report = reconcile(counters, records)
    assert report.ok, f"seed {seed}: {report.problems}"
