"""The behavioural Bob's event FIFO, drained at the link's record rate in the tagger's time:
below the link's limit nothing drops and the records are the golden model's; above it items
drop with OVERFLOW records and drop counters that reconcile with what is received."""

import numpy as np
import pytest

from bench.tagger import link_limit
from controller.tagger import RecordDecoder, reconcile
from gateware.spec.registers import REGISTER_MAP, Role
from gateware.spec.tagger import CHANNEL_COUNTERS, CHANNELS, GLOBAL_COUNTERS
from hil.model import ModelBoard
from hil.tagger_model import Item, TaggerConfig, TaggerModel

SAMPLES = 2
CLK_HZ = 48_000_000
BINS_PER_S = CLK_HZ * SAMPLES


def bob_board(cfg, **options):
    board = ModelBoard(role=Role.BOB, clk_hz=CLK_HZ, bob_options={"samples": SAMPLES, **options})
    for name in ("slot_period", "frame_slots", "sync_delay", "hist_shift"):
        board.bank.set(f"tagger.{name}", getattr(cfg, name))
    board.bank.set("tagger.gate", REGISTER_MAP["tagger.gate"].layout.const(
        {"start": cfg.gate_start, "width": cfg.gate_width}).as_value().value)
    board.bank.set("tagger.control", 1)
    return board


def light(rng, cfg, events_per_s, bins):
    """Poisson clicks on every channel at about ``events_per_s`` detections in all, a regular
    sync."""
    rate = events_per_s / BINS_PER_S / CHANNELS
    clicks = [np.unique(np.flatnonzero(rng.random(bins) < rate)) for _ in range(CHANNELS)]
    return clicks, np.arange(10, bins, cfg.frame_bins)


def counters_of(board):
    bank = board.bank
    out = {name: [bank.get(f"tagger.{name}", ch) for ch in range(CHANNELS)]
           for name in CHANNEL_COUNTERS}
    out.update({name: bank.get(f"tagger.{name}") for name in GLOBAL_COUNTERS})
    return out


def inject_in_stretches(board, clicks, syncs, bins, rng):
    cuts = np.unique(rng.integers(0, bins, 20)).tolist() + [bins]
    lo = 0
    for hi in cuts:
        part = [c[(c >= lo) & (c < hi)] for c in [*clicks, syncs]]
        board.bob.inject(part[:CHANNELS], part[CHANNELS], until=hi)
        lo = hi
    board.bob.idle(2 * board.bob.config().frame_bins)
    return np.frombuffer(bytes(board.bob.events.queue), dtype=">u4").astype(np.uint32)


@pytest.mark.parametrize("seed", range(3))
def test_below_the_link_limit_nothing_drops(seed):
    rng = np.random.default_rng(seed)
    cfg = TaggerConfig(samples=SAMPLES, slot_period=16, frame_slots=64)
    limit = link_limit(12_000_000)["limit_records_per_s"]
    bins = 400_000
    clicks, syncs = light(rng, cfg, 0.5 * limit, bins)
    board = bob_board(cfg)
    words = inject_in_stretches(board, clicks, syncs, bins, rng)
    want = TaggerModel(cfg).run(clicks, syncs)
    c = counters_of(board)
    assert c["dropped_events"] == c["dropped_markers"] == 0, f"seed {seed}"
    assert np.array_equal(words, want.words), f"seed {seed}"


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("baud", [12_000_000, 3_000_000])
def test_above_the_link_limit_events_drop_and_reconcile(seed, baud):
    rng = np.random.default_rng(100 + seed)
    cfg = TaggerConfig(samples=SAMPLES, slot_period=16, frame_slots=64)
    limit = link_limit(baud)["limit_records_per_s"]
    bins = 400_000
    seconds = (bins + 2 * cfg.frame_bins) / BINS_PER_S      # the light, then idle
    clicks, syncs = light(rng, cfg, 3 * limit, bins)
    board = bob_board(cfg, baud=baud)
    words = inject_in_stretches(board, clicks, syncs, bins, rng)
    where = f"seed {100 + seed}, baud {baud}"
    records = RecordDecoder().decode_words(words)
    c = counters_of(board)
    report = reconcile(c, records)
    assert report.ok, (where, report.problems)
    assert len(records.gaps) > 0 and c["dropped_events"] > 0, where
    # the FIFO holds fifo_words words and the link sends words at its limit, no faster
    sent = words.size
    assert sent <= board.bob.fifo_words + limit * seconds + 1, (where, sent)
    assert sent >= 0.9 * limit * seconds, (where, sent)
    # what was kept is the golden model's stream with the dropped items left out
    want = TaggerModel(cfg).run(clicks, syncs).items
    dets = want[want["kind"] == Item.DETECTION]
    got = set(zip(records.frame.tolist(), records.slot.tolist(), records.mask.tolist()))
    every = set(zip(dets["frame"].tolist(), dets["slot"].tolist(), dets["mask"].tolist()))
    assert got <= every, where
    assert len(records) + c["dropped_events"] == dets.size == c["events"], where
