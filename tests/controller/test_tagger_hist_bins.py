"""The host's phase histograms follow the board's ``tagger.info.hist_bins``: fewer hardware bins
read as such, and a board without hardware histograms (0, the iCEBreaker) gets them built from
the DETECTION records, with the records still all delivered to ``read_records``."""

import time

import numpy as np
import pytest

from controller.device import Device
from controller.tagger import Records, Tagger
from gateware.spec.registers import Role
from gateware.spec.tagger import CHANNELS, HIST_BINS, PHASE_BITS
from hil.bfm.detector import poisson
from hil.model import ModelBoard, ModelServer
from hil.tagger_model import Item, TaggerConfig, TaggerModel

SEED = 20261128


def light(seed, cfg, bins=40_000, rate=0.004):
    rng = np.random.default_rng(seed)
    clicks = [poisson(rng, rate, 0, bins, cfg.samples) for _ in range(CHANNELS)]
    syncs = np.arange(7, bins - 3000, cfg.frame_bins)
    return clicks, syncs


def serve(hist_bins):
    board = ModelBoard(role=Role.BOB, bob_options={"samples": 2, "hist_bins": hist_bins})
    return board, ModelServer(board)


def play(board, dev, cfg, seed, rate=0.004):
    tagger = Tagger(dev)
    tagger.configure(slot_period=cfg.slot_period, frame_slots=cfg.frame_slots,
                     sync_delay=cfg.sync_delay, gate_start=cfg.gate_start,
                     gate_width=cfg.gate_width, dead_time=cfg.dead_time,
                     hist_shift=cfg.hist_shift)
    tagger.clear()
    tagger.start()
    clicks, syncs = light(seed, cfg, rate=rate)
    want = TaggerModel(cfg).run(clicks, syncs)
    got = board.bob.inject(clicks, syncs)
    assert np.array_equal(got.words, want.words), f"seed {seed}"
    return tagger, want


@pytest.mark.parametrize("hist_bins", [8, HIST_BINS])
def test_hardware_histograms_of_the_boards_size(hist_bins):
    cfg = TaggerConfig(samples=2, slot_period=40, frame_slots=50, sync_delay=4, gate_start=3,
                       gate_width=9, dead_time=(5, 5, 20, 0), hist_shift=1)
    board, server = serve(hist_bins)
    with server, Device(server.url, timeout=1.0) as dev:
        tagger, want = play(board, dev, cfg, SEED)
        assert tagger.hist_bins == hist_bins and tagger.hist_source == "hardware"
        hist = tagger.histograms()
        assert hist.shape == (CHANNELS, hist_bins)
        # Bins past the board's last are not counted (the model's hist has HIST_BINS).
        assert np.array_equal(hist, want.hist[:, :hist_bins]), f"seed {SEED}"
        assert hist.sum() > 100


def test_histograms_from_records_without_hardware_bins():
    # Gate fully open: every synchronised click after dead time is accepted into a detection.
    cfg = TaggerConfig(samples=2, slot_period=40, frame_slots=50, sync_delay=4, gate_start=0,
                       gate_width=1 << PHASE_BITS, dead_time=(5, 5, 20, 0), hist_shift=1)
    shift = cfg.hist_shift
    board, server = serve(0)
    with server, Device(server.url, timeout=1.0) as dev:
        # Light low enough that a channel seldom clicks twice in a slot (see below).
        tagger, want = play(board, dev, cfg, SEED + 1, rate=0.0015)
        assert tagger.hist_bins == 0 and tagger.hist_source == "records"
        det = want.items[want.items["kind"] == Item.DETECTION]
        expect = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        for ch in range(CHANNELS):
            b = det["phase"][(det["mask"] & (1 << ch)) != 0] >> shift
            np.add.at(expect[ch], b[b < HIST_BINS], 1)
        assert expect.sum() > 100
        # Part of the records read by the caller, the rest pulled by histograms() itself.
        first = tagger.read_records(size=4 * (want.words.size // 2), timeout=5.0)
        deadline = time.monotonic() + 5.0
        while not np.array_equal(hist := tagger.histograms(), expect):
            assert time.monotonic() < deadline, \
                f"seed {SEED + 1}: {hist.sum()} of {expect.sum()} counts after 5 s"
            time.sleep(0.01)
        # The clicks' own histogram (the model's hardware one) has the same counts but for a
        # channel's second click in a slot (one detection) and clicks of two channels in one
        # slot (counted at the detection's phase, its first click's).
        assert abs(hist.sum() - want.hist.sum()) <= 0.05 * want.hist.sum()
        rest = tagger.read_records()
        records = Records.concat([first, rest])
        assert np.array_equal(records.phase, det["phase"]) and np.array_equal(
            records.mask, det["mask"]), "records pulled by histograms() must reach read_records"
        tagger.clear()
        assert not tagger.histograms().any()
