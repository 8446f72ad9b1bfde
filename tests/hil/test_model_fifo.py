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
    board.bob.idle()
    return np.frombuffer(bytes(board.bob.events.queue), dtype=">u4").astype(np.uint32)


@pytest.mark.parametrize("seed", range(3))
def test_below_the_link_limit_nothing_drops(seed):
    rng = np.random.default_rng(seed)
    cfg = TaggerConfig(samples=SAMPLES, slot_period=16, frame_slots=64)
    limit = link_limit(12_000_000)["limit_records_per_s"]
    bins = 400_000
    clicks, syncs = light(rng, cfg, 0.5 * limit, bins)
    board = bob_board(cfg, baud=12_000_000)
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


@pytest.mark.parametrize("seed", range(3))
def test_sustained_overload_gives_few_long_gaps(seed):
    """The gateware's hold: after a drop every item is dropped until the FIFO is half empty, so
    under 3x overload each OVERFLOW record stands for many detections (without the hold each
    word the link frees would let one item through between drops: gaps of a few)."""
    rng = np.random.default_rng(200 + seed)
    cfg = TaggerConfig(samples=SAMPLES, slot_period=16, frame_slots=64)
    limit = link_limit(12_000_000)["limit_records_per_s"]
    bins = 400_000
    clicks, syncs = light(rng, cfg, 3 * limit, bins)
    board = bob_board(cfg, baud=12_000_000)
    words = inject_in_stretches(board, clicks, syncs, bins, rng)
    records = RecordDecoder().decode_words(words)
    c = counters_of(board)
    where = f"seed {200 + seed}"
    assert reconcile(c, records).ok, where
    per_gap = c["dropped_events"] / len(records.gaps)
    # the hold lasts while half the FIFO (256 words) drains, at 3x the link's rate: ~500 drops
    assert per_gap > board.bob.fifo_words / 4, (where, per_gap, len(records.gaps))


@pytest.mark.parametrize("baud", [None, 12_000_000])
def test_idle_closes_the_run_and_reports_the_last_gap(baud):
    """The light stops: ``idle()`` runs the clock on until the last frame has ended with sync
    lost and the FIFO has sent its words and reported its drops; a second call adds nothing."""
    seed = 300
    rng = np.random.default_rng(seed)
    cfg = TaggerConfig(samples=SAMPLES, slot_period=16, frame_slots=64)
    limit = link_limit(12_000_000)["limit_records_per_s"]
    bins = 200_000
    clicks, syncs = light(rng, cfg, 3 * limit, bins)
    board = bob_board(cfg, baud=baud)
    board.bob.inject(clicks, syncs)                 # until: just after the last light
    c = counters_of(board)
    assert c["sync_losses"] == 0, "the last frame ended before the light stopped"
    board.bob.idle()
    again = board.bob.idle()
    assert again.words.size == 0 and again.counters["events"] == 0
    words = np.frombuffer(bytes(board.bob.events.queue), dtype=">u4").astype(np.uint32)
    records = RecordDecoder().decode_words(words)
    c = counters_of(board)
    where = f"seed {seed}, baud {baud}"
    assert c["sync_losses"] == c["sync_acquired"] == 1, (where, c)
    assert c["frames"] == syncs.size, where
    report = reconcile(c, records)
    assert report.ok, (where, report.problems)
    assert (c["dropped_events"] > 0) == (baud is not None), (where, c)
    want = TaggerModel(cfg).run(clicks, syncs)
    assert c["events"] == want.counters["events"], where
    if baud is None:
        assert np.array_equal(words, want.words), where


def test_light_after_idle_is_moved_later_and_starts_a_new_sync():
    """A source whose clock stood still while Bob idled sends light at times the tagger has
    passed: it is moved later by whole clocks (and stays moved), so the second run is the
    golden model's run of the same light, frame numbers going on."""
    seed = 400
    rng = np.random.default_rng(seed)
    cfg = TaggerConfig(samples=SAMPLES, slot_period=16, frame_slots=64)
    bins = 100_000
    clicks, syncs = light(rng, cfg, 50_000, bins)
    board = bob_board(cfg)
    board.bob.inject(clicks, syncs)
    board.bob.idle()
    first = len(board.bob.events.queue)
    half = bins // 2                                 # the same light again, in two stretches
    for part in ([c[c < half] for c in [*clicks, syncs]], [c[c >= half] for c in [*clicks, syncs]]):
        board.bob.inject(part[:CHANNELS], part[CHANNELS])
    board.bob.idle()
    offset = board.bob.offset
    assert offset > bins and offset % SAMPLES == 0, offset
    words = np.frombuffer(bytes(board.bob.events.queue[first:]), dtype=">u4").astype(np.uint32)
    want = TaggerModel(cfg).run(clicks, syncs, first_frame=syncs.size)
    assert np.array_equal(words, want.words), f"seed {seed}, offset {offset}"
    c = counters_of(board)
    assert c["sync_acquired"] == c["sync_losses"] == 2 and c["frames"] == 2 * syncs.size
