"""cocotb tests of the tagger's record-stream top on Verilator, scoreboarded against the model.

Each test builds click trains from ``COCOTB_RANDOM_SEED`` (logged), drives them as sample vectors
with the detector BFM, lets the last frame end, drains the captured records and compares them,
the counters and the histograms with ``hil.tagger_model`` bit for bit.
"""

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge

from gateware.spec.tagger import (CHANNELS, CHANNEL_COUNTERS, GLOBAL_COUNTERS, HIST_BINS,
                                  GateLayout, RecordKind, MarkerCode, DetectionRecord,
                                  FrameRecord, OverflowRecord, MarkerRecord, field_slice)
from hil.bfm.detector import DetectorSource, burst, poisson, spaced
from hil.tagger_model import Item, TaggerConfig, TaggerModel, render_records

N = int(os.environ["TAGGER_SAMPLES"])
FIFO_WORDS = int(os.environ["TAGGER_FIFO_WORDS"])
SEED = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
#: Stimulus length multiplier: 1 for the regular runs, more for the slow long runs.
SCALE = int(os.environ.get("TAGGER_SCALE", "1"))


class TB:
    """Clock, reset, the detector BFM and the record drain around the stream top."""

    def __init__(self, dut, offset):
        self.dut = dut
        self.seed = SEED + offset
        self.rng = np.random.default_rng(self.seed)
        dut._log.info("stimulus seed %d (COCOTB_RANDOM_SEED %d + %d)", self.seed, SEED, offset)
        cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
        inputs = {f"det{ch}": getattr(dut, f"det__{ch}") for ch in range(CHANNELS)}
        inputs["sync"] = dut.sync
        self.source = DetectorSource(inputs, dut.clk, N)

    async def reset(self, cfg):
        dut = self.dut
        dut.rst.value = 1
        dut.sink_ready.value = 1
        dut.o_records__ready.value = 0
        dut.control.value = 0
        dut.command.value = 0
        dut.hist__addr.value = 0
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
        dut.slot_period.value = cfg.slot_period
        dut.frame_slots.value = cfg.frame_slots
        dut.sync_delay.value = cfg.sync_delay
        dut.hist_shift.value = cfg.hist_shift
        dut.gate.value = GateLayout.const({"start": cfg.gate_start,
                                           "width": cfg.gate_width}).as_value().value
        for ch in range(CHANNELS):
            getattr(dut, f"dead_time__{ch}").value = cfg.dead_time[ch]
        await ClockCycles(dut.clk, 2)
        dut.control.value = 1
        await ClockCycles(dut.clk, 8)

    async def play(self, clicks, syncs):
        inputs = {f"det{ch}": clicks[ch] for ch in range(CHANNELS)}
        inputs["sync"] = syncs
        return await self.source.play(inputs)

    async def drain(self, idle=32):
        """Take every captured record; return them as a uint32 array."""
        dut = self.dut
        words = []
        await RisingEdge(dut.clk)
        dut.o_records__ready.value = 1
        quiet = 0
        while quiet < idle:
            await ReadOnly()
            if dut.o_records__valid.value:
                words.append(int(dut.o_records__payload.value))
                quiet = 0
            else:
                quiet += 1
            await RisingEdge(dut.clk)
        dut.o_records__ready.value = 0
        return np.array(words, dtype=np.uint32)

    def counters(self):
        out = {name: np.array([int(getattr(self.dut, f"{name}__{ch}").value)
                               for ch in range(CHANNELS)]) for name in CHANNEL_COUNTERS}
        out.update({name: int(getattr(self.dut, name).value) for name in GLOBAL_COUNTERS})
        return out

    async def hist(self):
        out = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        for a in range(CHANNELS * HIST_BINS):
            self.dut.hist__addr.value = a
            await ClockCycles(self.dut.clk, 2)
            out[a // HIST_BINS, a % HIST_BINS] = int(self.dut.hist__data.value)
        return out

    async def run(self, cfg, clicks, syncs):
        """Reset, play, let the last frame end, drain; return (words, counters, hist, model)."""
        await self.reset(cfg)
        clocks = await self.play(clicks, syncs)
        await ClockCycles(self.dut.clk, cfg.frame_bins // N + 64)
        words = await self.drain()
        counters = self.counters()
        hist = await self.hist()
        model = TaggerModel(cfg).run(clicks, syncs)
        self.dut._log.info("%d clocks played, %d records, %d events, seed %d", clocks,
                           words.size, model.counters["events"], self.seed)
        return words, counters, hist, model

    def compare(self, words, counters, hist, model, *, drops=False):
        """Scoreboard: counters, histograms and records equal the model's (with ``drops``,
        up to the items the queue dropped, which must match the OVERFLOW records)."""
        where = f"seed {self.seed}"
        for name, want in model.counters.items():
            if drops and name in ("dropped_events", "dropped_markers"):
                continue
            assert np.array_equal(counters[name], want), \
                f"{where}: counter {name}: gateware {counters[name]}, model {want}"
        assert np.array_equal(hist, model.hist), f"{where}: phase histograms differ"
        if not drops:
            assert counters["dropped_events"] == counters["dropped_markers"] == 0, where
            assert words.size == model.words.size and np.array_equal(words, model.words), \
                f"{where}: records differ at {first_difference(words, model.words)}"
            return
        kept, gaps, skipped = match_with_drops(words, model.items)
        assert skipped == (counters["dropped_events"], counters["dropped_markers"]), \
            f"{where}: the model's items missing from the stream {skipped} differ from the " \
            f"drop counters {counters['dropped_events'], counters['dropped_markers']}"
        rendered = render_records(kept, gaps)
        assert np.array_equal(words, rendered), \
            f"{where}: records differ from the model's re-rendered with the same drops at " \
            f"{first_difference(words, rendered)}"


def first_difference(a, b):
    n = min(a.size, b.size)
    diff = np.flatnonzero(a[:n] != b[:n])
    i = int(diff[0]) if diff.size else n
    return f"record {i}: gateware {[hex(w) for w in a[i:i + 4]]} model {[hex(w) for w in b[i:i + 4]]}"


def fld(layout, name, word):
    offset, width = field_slice(layout, name)
    return (word >> offset) & ((1 << width) - 1)


def parse_items(words):
    """Return the gateware's items as (kind, frame, slot, mask, phase) tuples with the OVERFLOW
    counts seen just before each, plus a trailing gap."""
    items, gaps, frame, pending = [], [], None, [0, 0]
    for w in words.tolist():
        kind = fld(DetectionRecord, "kind", w)
        if kind == RecordKind.OVERFLOW.value:
            pending[0] += fld(OverflowRecord, "events", w)
            pending[1] += fld(OverflowRecord, "markers", w)
        elif kind == RecordKind.FRAME.value:
            frame = fld(FrameRecord, "frame", w)
        elif kind == RecordKind.DETECTION.value:
            items.append((Item.DETECTION, frame, fld(DetectionRecord, "slot", w),
                          fld(DetectionRecord, "mask", w), fld(DetectionRecord, "phase", w)))
            gaps.append(tuple(pending))
            pending = [0, 0]
        else:
            lost = fld(MarkerRecord, "code", w) == MarkerCode.SYNC_LOST.value
            items.append((Item.SYNC_LOST if lost else Item.SYNC_ACQUIRED,
                          fld(MarkerRecord, "frame", w), 0, 0, 0))
            gaps.append(tuple(pending))
            pending = [0, 0]
    return items, gaps, tuple(pending)


def match_with_drops(words, model_items):
    """Match the gateware's items to a subsequence of the model's; check each gap's counts equal
    the model items skipped there. Return (kept model items + a GAP item for a trailing gap,
    gaps per kept item, total skipped (events, markers))."""
    got, got_gaps, trailing = parse_items(words)
    keep, gaps = [], []
    i = 0
    total = [0, 0]
    for item, gap in zip(got, got_gaps):
        skipped = [0, 0]
        while i < model_items.size and not same(model_items[i], item):
            skipped[0 if model_items[i]["kind"] == Item.DETECTION else 1] += 1
            i += 1
        assert i < model_items.size, f"gateware item {item} is not in the model's stream"
        assert tuple(skipped) == gap, f"before {item}: OVERFLOW says {gap}, model skipped {skipped}"
        keep.append(i)
        gaps.append(gap)
        total[0] += skipped[0]
        total[1] += skipped[1]
        i += 1
    rest = model_items[i:]
    tail = (int((rest["kind"] == Item.DETECTION).sum()), int((rest["kind"] != Item.DETECTION).sum()))
    assert tail == trailing, f"after the last item: OVERFLOW says {trailing}, model has {tail} more"
    kept = model_items[keep]
    if trailing != (0, 0):
        gap_item = np.zeros(1, dtype=model_items.dtype)
        gap_item["kind"] = Item.GAP
        kept = np.concatenate([kept, gap_item])
        gaps.append(trailing)
    return kept, gaps, (total[0] + tail[0], total[1] + tail[1])


def same(model_item, item):
    kind, frame, slot, mask, phase = item
    if int(model_item["kind"]) != kind:
        return False
    if kind == Item.DETECTION:
        frame_bits = field_slice(FrameRecord, "frame")[1]
        return (int(model_item["frame"]) & ((1 << frame_bits) - 1), int(model_item["slot"]),
                int(model_item["mask"]), int(model_item["phase"])) == (frame, slot, mask, phase)
    return int(model_item["frame"]) & ((1 << field_slice(MarkerRecord, "frame")[1]) - 1) == frame


def regular_syncs(rng, cfg, start, stop, jitter=0):
    syncs = np.arange(start, stop, cfg.frame_bins)
    if jitter:
        syncs = syncs + rng.integers(-jitter, jitter + 1, syncs.size)
    return spaced(syncs, N)


# -- the cases -------------------------------------------------------------------------------------

@cocotb.test()
async def test_poisson_trains(dut):
    """Poisson clicks on every channel against a regular sync, gate and dead time set."""
    tb = TB(dut, 1)
    cfg = TaggerConfig(samples=N, slot_period=12, frame_slots=40, sync_delay=5, gate_start=3,
                       gate_width=5, dead_time=(0, 6, 13, 40), hist_shift=0)
    bins = 30_000 * SCALE
    clicks = [poisson(tb.rng, 0.004, 0, bins, N) for _ in range(CHANNELS)]
    syncs = regular_syncs(tb.rng, cfg, 17, bins)
    words, counters, hist, model = await tb.run(cfg, clicks, syncs)
    assert model.counters["events"] > 150 * SCALE
    tb.compare(words, counters, hist, model)


@cocotb.test()
async def test_bursts_and_dead_time(dut):
    """Bursts spaced about half the dead time: every other click is inside it."""
    tb = TB(dut, 2)
    dead = (20, 9, 33, 4)
    cfg = TaggerConfig(samples=N, slot_period=16, frame_slots=64, sync_delay=0, dead_time=dead,
                       gate_start=0, gate_width=16, hist_shift=0)
    clicks = []
    for ch in range(CHANNELS):
        starts = np.sort(tb.rng.integers(100, 20_000 * SCALE, 8 * SCALE))
        clicks.append(spaced(np.concatenate([burst(tb.rng, s, 20, max(dead[ch] // 2, 2), N)
                                             for s in starts]), N))
    syncs = regular_syncs(tb.rng, cfg, 50, 20_000 * SCALE + 2000)
    words, counters, hist, model = await tb.run(cfg, clicks, syncs)
    assert model.counters["dead"].sum() > 60 and model.counters["accepted"].sum() > 60
    tb.compare(words, counters, hist, model)


@cocotb.test()
async def test_gate_edges(dut):
    """Clicks one bin either side of each gate edge, in random slots."""
    tb = TB(dut, 3)
    cfg = TaggerConfig(samples=N, slot_period=20, frame_slots=30, sync_delay=7, gate_start=6,
                       gate_width=9, hist_shift=0)
    syncs = regular_syncs(tb.rng, cfg, 11, 15_000 * SCALE)
    origins = syncs + cfg.sync_delay
    phases = np.array([cfg.gate_start - 1, cfg.gate_start, cfg.gate_start + cfg.gate_width - 1,
                       cfg.gate_start + cfg.gate_width, 0, cfg.slot_period - 1])
    clicks = []
    for ch in range(CHANNELS):
        count = 150 * SCALE
        frame = tb.rng.integers(0, origins.size - 1, count)
        slot = tb.rng.integers(0, cfg.frame_slots, count)
        t = origins[frame] + slot * cfg.slot_period + tb.rng.choice(phases, count)
        clicks.append(spaced(t, N, min_gap=cfg.slot_period // 2))
    words, counters, hist, model = await tb.run(cfg, clicks, syncs)
    assert model.counters["out_of_gate"].sum() > 100 and model.counters["accepted"].sum() > 100
    tb.compare(words, counters, hist, model)


@cocotb.test()
async def test_simultaneous_clicks(dut):
    """Clicks in the same bin, the same clock and the same slot on several channels merge."""
    tb = TB(dut, 4)
    cfg = TaggerConfig(samples=N, slot_period=N, frame_slots=500, sync_delay=1, hist_shift=0)
    base = np.sort(tb.rng.choice(np.arange(100, 15_000 * SCALE, 3 * N), 300 * SCALE,
                                 replace=False))
    clicks = []
    for ch in range(CHANNELS):
        # Channels 1 and 3 a bin late: same slot mostly, now and then across its boundary.
        mine = base[tb.rng.random(base.size) < 0.6] + ch % 2
        clicks.append(spaced(mine, N))
    syncs = regular_syncs(tb.rng, cfg, 40, 15_000 * SCALE + 1000)
    words, counters, hist, model = await tb.run(cfg, clicks, syncs)
    det = model.items[model.items["kind"] == Item.DETECTION]
    assert (np.bitwise_count(det["mask"].astype(np.uint8)) > 1).sum() > 50
    tb.compare(words, counters, hist, model)


@cocotb.test()
async def test_sync_loss_and_reacquisition(dut):
    """Sync outages, late syncs (one bin past the frame end), early syncs cutting frames."""
    tb = TB(dut, 5)
    cfg = TaggerConfig(samples=N, slot_period=7, frame_slots=25, sync_delay=3, hist_shift=0,
                       dead_time=(3, 3, 3, 3))
    period = cfg.frame_bins
    frames = 100 * SCALE
    syncs = 20 + period * np.arange(frames) + tb.rng.choice([-2, -1, 0, 0, 0, 1], frames)
    keep = np.ones(syncs.size, dtype=bool)
    keep[30:40] = keep[60:63] = keep[80] = False
    syncs = spaced(syncs[keep], N)
    bins = int(syncs[-1]) + period
    clicks = [poisson(tb.rng, 0.01, 0, bins, N) for _ in range(CHANNELS)]
    words, counters, hist, model = await tb.run(cfg, clicks, syncs)
    assert model.counters["sync_losses"] > 10 and model.counters["no_sync"] > 50
    tb.compare(words, counters, hist, model)


@cocotb.test()
async def test_full_rate_front_end(dut):
    """Every channel clicks in every clock for 4000 clocks: nothing is missed or dropped."""
    tb = TB(dut, 6)
    cfg = TaggerConfig(samples=N, slot_period=2 * N, frame_slots=1000, sync_delay=0,
                       hist_shift=0)
    clocks = 4000
    clicks = [np.arange(200, 200 + clocks) * N + ch % N for ch in range(CHANNELS)]
    syncs = np.arange(100, (200 + clocks + 10) * N, cfg.frame_bins)
    words, counters, hist, model = await tb.run(cfg, clicks, syncs)
    assert all(counters["raw"] == clocks), counters["raw"]
    tb.compare(words, counters, hist, model)


@cocotb.test()
async def test_overflow_under_back_pressure(dut):
    """The sink stops taking records for a while: the FIFO fills, events are dropped and
    counted, OVERFLOW records mark the gaps, and the kept records are the model's."""
    tb = TB(dut, 7)
    cfg = TaggerConfig(samples=N, slot_period=8, frame_slots=200, sync_delay=2, hist_shift=0)
    bins = 40_000
    clicks = [poisson(tb.rng, 0.01, 0, bins, N) for _ in range(CHANNELS)]
    syncs = regular_syncs(tb.rng, cfg, 30, bins)

    async def back_pressure():
        for start, length in ((1500, 2500), (6000, 1200)):
            await ClockCycles(dut.clk, start if start == 1500 else start - 4000)
            dut.sink_ready.value = 0
            await ClockCycles(dut.clk, length)
            dut.sink_ready.value = 1

    await tb.reset(cfg)
    cocotb.start_soon(back_pressure())
    await tb.play(clicks, syncs)
    await ClockCycles(dut.clk, cfg.frame_bins // N + 64)
    words = await tb.drain()
    counters = tb.counters()
    hist = await tb.hist()
    model = TaggerModel(cfg).run(clicks, syncs)
    assert counters["dropped_events"] > 50, f"seed {tb.seed}: no overflow happened"
    tb.compare(words, counters, hist, model, drops=True)


#: Clocks from a sample vector on the pins to the click register that ``control.enable`` gates
#: (``FirstEdge``'s latency: two synchroniser stages and the edge register).
GATE_LATENCY = 3


class BehaviouralBob:
    """The behavioural board's Bob (``hil.model.BobBlock``), set up and driven through its
    registers as the host drives a board."""

    def __init__(self, cfg):
        from gateware.spec.registers import Role
        from hil.model import ModelBoard
        self.board = ModelBoard(role=Role.BOB, bob_options={"samples": N})
        self.bank = self.board.bank
        for name in ("slot_period", "frame_slots", "sync_delay", "hist_shift"):
            self.write(name, getattr(cfg, name))
        self.write("gate", GateLayout.const({"start": cfg.gate_start,
                                             "width": cfg.gate_width}).as_value().value)
        for ch in range(CHANNELS):
            self.write("dead_time", cfg.dead_time[ch], ch)

    def write(self, name, value, index=0):
        assert self.bank.write(self.bank.map.address(f"tagger.{name}", index), value) is None

    def counters(self):
        out = {name: np.array([self.bank.get(f"tagger.{name}", ch) for ch in range(CHANNELS)])
               for name in CHANNEL_COUNTERS}
        out.update({name: self.bank.get(f"tagger.{name}") for name in GLOBAL_COUNTERS})
        return out


def with_click(times, t):
    """Return ``times`` with a click at bin ``t`` (clicks closer than 2 bins to it removed)."""
    times = np.asarray(times, dtype=np.int64)
    return np.sort(np.append(times[np.abs(times - t) >= 2], t))


@cocotb.test()
async def test_stop_and_start_mid_run(dut):
    """``control.enable`` to 0 and back to 1 twice while light comes: the open event is flushed,
    sync is dropped without a SYNC_LOST marker (a pending origin forgotten), the dead time
    forgotten, clicks are no-sync after the start until the next origin, which is acquired.
    The behavioural Bob (``hil.model.BobBlock``), set up and stopped through its registers at
    the same times, sends the same records, counters and histograms."""
    tb = TB(dut, 8)
    cfg = TaggerConfig(samples=N, slot_period=12, frame_slots=40, sync_delay=5, gate_start=0,
                       gate_width=12, dead_time=(0, 6, 13, 200), hist_shift=0)
    bins = 30_000 * SCALE
    clocks = bins // N
    clicks = [poisson(tb.rng, 0.01, 0, bins, N) for _ in range(CHANNELS)]
    syncs = regular_syncs(tb.rng, cfg, 17, bins)
    # (stop, start) in clocks of the play: the first stop shorter than a frame (the start
    # comes before the stopped frame would have ended), the second longer
    frame_clocks = cfg.frame_bins // N
    k1 = clocks // 5 + int(tb.rng.integers(0, frame_clocks))
    k2 = clocks // 2 + int(tb.rng.integers(0, frame_clocks))
    windows = [(k1, k1 + frame_clocks // 4), (k2, k2 + 3 * frame_clocks)]
    edges = [(k - GATE_LATENCY) * N for window in windows for k in window]   # bins
    for stop, start in zip(edges[::2], edges[1::2]):
        # an open event at each stop (channels 0 and 3), and a click of channel 3 just after
        # the start, which its dead time would reject had the stop not ended it
        clicks[0] = with_click(clicks[0], stop - 1)
        clicks[3] = with_click(with_click(clicks[3], stop - 2), start + 1)

    async def control():
        await RisingEdge(dut.clk)             # the play's clock 0
        now = 0
        for k, value in zip((k for window in windows for k in window), (0, 1, 0, 1)):
            await ClockCycles(dut.clk, k - now)
            now = k
            dut.control.value = value

    await tb.reset(cfg)
    cocotb.start_soon(control())
    await tb.play(clicks, syncs)
    await ClockCycles(dut.clk, cfg.frame_bins // N + 64)
    words = await tb.drain()
    counters = tb.counters()
    hist = await tb.hist()

    bob = BehaviouralBob(cfg)
    bob.write("control", 1)
    flushed = []
    for lo, hi, value in zip([0, *edges], [*edges, None], [0, 1, 0, 1, None]):
        end = np.iinfo(np.int64).max if hi is None else hi
        part = [c[(c >= lo) & (c < end)] for c in [*clicks, syncs]]
        bob.board.bob.inject(part[:CHANNELS], part[CHANNELS], until=hi)
        if value is not None:
            events = bob.counters()["events"]
            bob.write("control", value)
            flushed.append(bob.counters()["events"] - events)
    bob.board.bob.idle()
    model_words = np.frombuffer(bytes(bob.board.bob.events.queue), dtype=">u4").astype(np.uint32)
    want = bob.counters()
    where = f"seed {tb.seed}"
    dut._log.info("stops at bins %s, %d records, %d events, %s", edges, words.size,
                  want["events"], where)
    assert flushed == [1, 0, 1, 0], f"{where}: events flushed by the writes: {flushed}"
    assert want["sync_acquired"] >= 3 and want["no_sync"] > 0, f"{where}: {want}"
    for name in want:
        assert np.array_equal(counters[name], want[name]), \
            f"{where}: counter {name}: gateware {counters[name]}, model {want[name]}"
    assert np.array_equal(hist, bob.board.bob.hist), f"{where}: phase histograms differ"
    assert words.size == model_words.size and np.array_equal(words, model_words), \
        f"{where}: records differ at {first_difference(words, model_words)}"
