"""hil.fibre: the time base shared by both boards, stretches of whole frames, photons at the
phase the time base says, underflowed slots as vacuum, determinism."""

import numpy as np
import pytest

from gateware.spec.modulator import Intensity
from gateware.spec.registers import Role
from hil.fibre import Fibre, ModelBob, TimeBase, min_spaced
from hil.model import ModelBoard
from hil.optics import Fibre as FibreParams, LinkConfig, Receiver, Source

SEED = 7


def bright(length_km=0.0, **receiver):
    """A lossless, noiseless link where a signal pulse clicks often (efficiency 1, mu 0.5)."""
    r = dict(efficiency=1.0, misalignment=0.0, dark_probability=0.0, p_z=1.0)
    r.update(receiver)
    return LinkConfig(source=Source((0.5, 0.1, 0.0)), fibre=FibreParams(length_km=length_km),
                      receiver=Receiver(**r))


def test_time_base_ties_the_registers():
    tb = TimeBase(clk_hz=48_000_000, slot_cycles=48, frame_slots=1024, samples=2)
    assert tb.slot_bins == 96 and tb.frame_bins == 96 * 1024
    assert tb.slot_ps == pytest.approx(1e6) and tb.bin_ps == pytest.approx(1e12 / 96e6)
    bob = tb.bob_settings()
    assert bob["slot_period"] == tb.slot_bins and bob["frame_slots"] == tb.frame_slots
    assert tb.alice_settings() == {"slot_period": 48, "frame_slots": 1024}
    assert 32 << bob["hist_shift"] >= tb.slot_bins      # the histogram covers the slot
    with pytest.raises(ValueError, match="at least"):
        TimeBase(slot_cycles=2)
    with pytest.raises(ValueError, match="frame_slots"):
        TimeBase(frame_slots=1 << 14)
    with pytest.raises(ValueError, match="bins"):
        TimeBase(slot_cycles=4000)


@pytest.mark.parametrize("length_km", [0.0, 25.0])
def test_stretches_hold_whole_frames_and_photons_land_at_their_phase(length_km):
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    fibre = Fibre(bright(length_km), tb, seed=SEED)
    rng = np.random.default_rng(SEED)
    n = 64 * 10 + 17
    bit, basis = rng.integers(0, 2, n), rng.integers(0, 2, n)
    intensity = np.zeros(n, np.int64)
    fibre.play(0, bit, basis, intensity)
    s = fibre.pump()
    # the frame in progress (from slot 640) stays with the fibre until the next one starts
    assert s.first_slot == 0 and s.end_slot == 640 and s.syncs.size == 10
    assert np.all(np.diff(s.syncs) == tb.frame_bins)
    rest = fibre.flush()
    assert rest.first_slot == 640 and rest.end_slot == n and rest.syncs.size == 1
    for stretch in (s, rest):
        origin = stretch.syncs[0]
        for ch, times in enumerate(stretch.clicks):
            phase = (times - origin) % tb.slot_bins
            assert np.all(phase == fibre.photon_phase_bins), f"channel {ch}: phases {set(phase)}"
    assert fibre.stats["clicks"] == s.n_clicks + rest.n_clicks > 0.1 * n


def test_alice_board_underflow_goes_out_as_vacuum():
    board = ModelBoard(role=Role.ALICE, alice_options={"clock": None})
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    fibre = Fibre(bright(), tb, seed=SEED).attach(board.alice)
    board.bank.set("modulator.slot_period", tb.slot_cycles)
    board.bank.set("modulator.frame_slots", tb.frame_slots)
    # 200 signal slots in Z, bit 1 (nibble 0b0001: bit 1, basis Z, intensity SIGNAL)
    board.alice.fifo += bytes([0x11]) * 100
    board.bank.write(board.bank.map.address("modulator.control"), 1)
    board.alice.advance(399)                    # 200 with choices, 200 underflowed
    fibre.flush()
    assert fibre.stats["slots"] == 400 and fibre.stats["underflow_slots"] == 200
    assert board.bank.get("modulator.underflow_slots") == 200
    (stretch,) = fibre.stretches
    origin = stretch.syncs[0]
    slots = np.concatenate([(t - origin) // tb.slot_bins for t in stretch.clicks])
    assert slots.size > 50 and slots.max() < 200, "a click came from an underflowed (vacuum) slot"
    assert stretch.clicks[1].size == slots.size, "Z, bit 1 with no misalignment: Z1 clicks only"


def test_same_seed_same_light():
    def run(seed):
        tb = TimeBase(slot_cycles=8, frame_slots=64)
        fibre = Fibre(bright(25.0, dark_probability=1e-3, jitter_ps=30_000.0), tb, seed=seed)
        rng = np.random.default_rng(1)
        n = 5000
        fibre.play(0, rng.integers(0, 2, n), rng.integers(0, 2, n), rng.integers(0, 3, n))
        s = fibre.flush()
        return np.concatenate(s.clicks), s.syncs
    a, b, c = run(SEED), run(SEED), run(SEED + 1)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_near_coincident_clicks_merge_into_one_pulse():
    assert min_spaced([10, 11, 12, 13, 20]).tolist() == [10, 12, 20]
    assert min_spaced([5, 1]).tolist() == [1, 5]


def test_model_bob_tags_the_fibre_light():
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    bob_board = ModelBoard(role=Role.BOB, bob_options={"samples": tb.samples})
    for name, value in tb.bob_settings().items():
        if name in ("slot_period", "frame_slots", "sync_delay", "hist_shift"):
            bob_board.bank.set(f"tagger.{name}", value)
    bob_board.bank.set("tagger.control", 1)
    sink = ModelBob(bob_board.bob)
    fibre = Fibre(bright(), tb, seed=SEED, bob=sink)
    n = 64 * 8
    fibre.play(0, np.ones(n, np.int64), np.zeros(n, np.int64), np.zeros(n, np.int64))
    fibre.flush()
    (result,) = sink.results
    assert result.counters["frames"] == 8 and result.counters["sync_losses"] == 0
    tail = bob_board.bob.idle(tb.frame_bins)         # the light stopped: the last frame ends
    assert tail.counters["sync_losses"] == 1 and tail.counters["frames"] == 0
    events = result.counters["events"] + tail.counters["events"]
    assert result.counters["no_sync"] == 0 and events == fibre.stats["clicks"]
    assert result.counters["accepted"][1] == fibre.stats["clicks"]     # Z1 only


def test_time_goes_on_across_a_reset_of_alices_board():
    board = ModelBoard(role=Role.ALICE, alice_options={"clock": None})
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    fibre = Fibre(bright(), tb, seed=SEED).attach(board.alice)
    control = board.bank.map.address("modulator.control")
    for _ in range(2):
        board.bank.set("modulator.slot_period", tb.slot_cycles)
        board.bank.set("modulator.frame_slots", tb.frame_slots)
        board.alice.fifo += bytes([0x11]) * 100
        board.bank.write(control, 1)
        board.alice.advance(199)
        board.bank.write(control, 0)
        fibre.flush()
        board.reset()                           # slot numbers restart at 0
    a, b = fibre.stretches
    assert fibre.stats["resets"] == 1 and fibre.slot_offset == 200
    assert (a.first_slot, a.end_slot, b.first_slot, b.end_slot) == (0, 200, 200, 400)
    assert b.syncs[0] - a.syncs[0] == 200 * tb.slot_bins
    assert np.concatenate(b.clicks).min() > np.concatenate(a.clicks).max()


def test_a_slot_period_off_the_time_base_stops_the_fibre():
    board = ModelBoard(role=Role.ALICE, alice_options={"clock": None})
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    fibre = Fibre(bright(), tb, seed=SEED).attach(board.alice)
    board.bank.set("modulator.slot_period", 12)
    board.bank.set("modulator.frame_slots", tb.frame_slots)
    board.bank.write(board.bank.map.address("modulator.control"), 1)
    board.alice.advance(10)
    with pytest.raises(RuntimeError, match="12 clock cycles"):
        fibre.flush()
