"""Host side of the tagger: record decoding, overflow gaps, counter reconciliation, and the
controller driving the behavioural board's Bob over TCP."""

import numpy as np
import pytest

from controller.device import Device
from controller.tagger import RecordDecoder, Records, Tagger, decode, reconcile
from gateware.spec.registers import Role
from gateware.spec.tagger import CHANNELS, HIST_BINS, MarkerCode, RecordKind
from hil.bfm.detector import poisson
from hil.model import ModelBoard, ModelServer
from hil.tagger_model import Item, TaggerConfig, TaggerModel, encode, render_records

SEED = 20261127


def run_model(seed=SEED, cfg=None, bins=40_000, rate=0.01):
    cfg = cfg or TaggerConfig(samples=2, slot_period=10, frame_slots=50, sync_delay=4,
                              gate_start=2, gate_width=6, dead_time=(5, 5, 20, 0))
    rng = np.random.default_rng(seed)
    clicks = [poisson(rng, rate, 0, bins, cfg.samples) for _ in range(CHANNELS)]
    syncs = np.arange(7, bins - 3000, cfg.frame_bins)
    syncs = syncs[(syncs < 10_000) | (syncs > 14_000)]   # a sync outage
    return cfg, clicks, syncs, TaggerModel(cfg).run(clicks, syncs)


def test_decode_matches_model_items():
    _, _, _, result = run_model()
    got = decode(result.words.astype(">u4").tobytes())
    det = result.items[result.items["kind"] == Item.DETECTION]
    assert len(got) == det.size > 100
    assert np.array_equal(got.frame, det["frame"])
    assert np.array_equal(got.slot, det["slot"])
    assert np.array_equal(got.mask, det["mask"])
    assert np.array_equal(got.phase, det["phase"])
    assert got.count_markers(MarkerCode.SYNC_LOST) == result.counters["sync_losses"] >= 2
    assert got.count_markers(MarkerCode.SYNC_ACQUIRED) == result.counters["sync_acquired"]
    assert got.gaps.shape == (0, 3)


def test_decode_in_odd_chunks_equals_whole():
    _, _, _, result = run_model(seed=SEED + 1)
    raw = result.words.astype(">u4").tobytes()
    decoder = RecordDecoder()
    rng = np.random.default_rng(SEED)
    parts, pos = [], 0
    while pos < len(raw):
        step = int(rng.integers(1, 23))
        parts.append(decoder.feed(raw[pos:pos + step]))
        pos += step
    whole, joined = decode(raw), Records.concat(parts)
    for name in ("frame", "slot", "mask", "phase", "markers"):
        assert np.array_equal(getattr(whole, name), getattr(joined, name)), name


def test_overflow_gap_is_reported_where_it_happened():
    _, _, _, result = run_model(seed=SEED + 2)
    items = result.items
    det_idx = np.flatnonzero(items["kind"] == Item.DETECTION)
    cut = det_idx[10:15]                     # five detections lost in the queue
    keep = np.setdiff1d(np.arange(items.size), cut)
    gaps = [(0, 0)] * keep.size
    after = int(np.searchsorted(keep, cut[-1]))
    gaps[after] = (5, 0)
    words = render_records(items[keep], gaps)
    got = decode(words)
    assert got.gaps.tolist() == [[10, 5, 0]]
    assert got.dropped_events == 5
    # The detection after the gap carries its frame again (a FRAME record follows OVERFLOW).
    kinds = words >> 30
    ov = int(np.flatnonzero(kinds == RecordKind.OVERFLOW.value)[0])
    nxt = ov + 1 + int(np.argmax(kinds[ov + 1:] != RecordKind.MARKER.value))
    assert kinds[nxt] == RecordKind.FRAME.value
    assert np.array_equal(got.frame, items[keep][items[keep]["kind"] == Item.DETECTION]["frame"])


def test_frame_numbers_unwrap():
    words = np.concatenate([
        encode(RecordKind.FRAME, frame=[(1 << 30) - 1]), encode(RecordKind.DETECTION, slot=[3]),
        encode(RecordKind.FRAME, frame=[1]), encode(RecordKind.DETECTION, slot=[4]),
    ])
    assert decode(words).frame.tolist() == [(1 << 30) - 1, (1 << 30) + 1]


def test_reconcile_flags_what_is_missing():
    _, _, _, result = run_model(seed=SEED + 3)
    records = decode(result.words)
    counters = {k: (list(v) if isinstance(v, np.ndarray) else int(v))
                for k, v in result.counters.items()}
    assert reconcile(counters, records).ok
    short = decode(result.words[:-40])
    report = reconcile(counters, short)
    assert not report.ok and any("unaccounted" in p for p in report.problems)
    counters["dropped_events"] = 3
    assert any("overflow records report 0" in p for p in reconcile(counters, records).problems)


@pytest.fixture
def bob_board():
    board = ModelBoard(role=Role.BOB, bob_options={"samples": 2})
    with ModelServer(board) as server:
        yield board, server


def test_controller_drives_model_bob_over_tcp(bob_board):
    board, server = bob_board
    cfg, clicks, syncs, want = run_model(seed=SEED + 4)
    with Device(server.url, timeout=1.0) as dev:
        assert dev.info()["role"] == "BOB"
        tagger = Tagger(dev)
        assert tagger.samples == 2 and tagger.hist_bins == HIST_BINS
        assert tagger.bin_s == pytest.approx(1 / (dev.read("core.clk_hz") * 2))
        tagger.configure(slot_period=cfg.slot_period, frame_slots=cfg.frame_slots,
                         sync_delay=cfg.sync_delay, gate_start=cfg.gate_start,
                         gate_width=cfg.gate_width, dead_time=cfg.dead_time,
                         channel_map=[(0, 0), (0, 1), (1, 0), (1, 1)])
        assert tagger.channel_map() == [(0, 0), (0, 1), (1, 0), (1, 1)]
        tagger.clear()
        assert board.bob.inject(clicks, syncs) is None, "a stopped tagger must ignore clicks"
        tagger.start()
        got_result = board.bob.inject(clicks, syncs)
        assert np.array_equal(got_result.words, want.words)
        records = tagger.read_records(size=4 * want.words.size, timeout=5.0)
        tagger.stop()
        det = want.items[want.items["kind"] == Item.DETECTION]
        assert len(records) == det.size
        assert np.array_equal(records.slot, det["slot"])
        counters = tagger.counters()
        assert counters["events"] == det.size
        assert counters["raw"] == [int(x) for x in want.counters["raw"]]
        report = reconcile(counters, records)
        assert report.ok, report.problems
        assert np.array_equal(tagger.histograms(), want.hist)
        tagger.clear()
        assert tagger.counters()["events"] == 0
        assert not tagger.histograms().any()


def test_configure_refuses_bad_settings(bob_board):
    _, server = bob_board
    with Device(server.url, timeout=1.0) as dev:
        tagger = Tagger(dev)
        with pytest.raises(KeyError, match="unknown tagger setting"):
            tagger.configure(slot_width=4)
        with pytest.raises(ValueError, match="slot_period 1 bins"):
            tagger.configure(slot_period=1)
