"""hil.fibre fed from an Alice twin's pins (``Fibre.play_pins``, what ``attach_twin`` calls with
the slot monitor's records): the same light as the same choices played as a model Alice's batch;
a slot whose laser did not fire is vacuum; frames start at sync pulses; a slot period or frame
length off the time base stops the fibre. Pure Python (no Verilator)."""

import numpy as np
import pytest

from gateware.spec.modulator import Intensity
from hil.fibre import Fibre, TimeBase
from hil.optics import Fibre as FibreParams, LinkConfig, Receiver, Source

SEED = 11


def bright():
    """Lossless, noiseless, efficiency 1: a signal pulse clicks often."""
    return LinkConfig(source=Source((0.5, 0.1, 0.0)), fibre=FibreParams(length_km=0.0),
                      receiver=Receiver(efficiency=1.0, misalignment=0.0, dark_probability=0.0))


def _pins(bit, basis, intensity, frame_slots):
    state = (np.asarray(basis) << 1) | np.asarray(bit)
    laser = np.asarray(intensity) < Intensity.VACUUM.value
    sync = np.arange(len(bit)) % frame_slots == 0
    return state, np.asarray(intensity), laser, sync


def _choices(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 2, n), rng.integers(0, 2, n),
            rng.choice(3, n, p=[0.7, 0.2, 0.1]))


def _same(a, b):
    assert (a.first_slot, a.end_slot) == (b.first_slot, b.end_slot)
    assert np.array_equal(a.syncs, b.syncs)
    for x, y in zip(a.clicks, b.clicks):
        assert np.array_equal(x, y)


def test_pins_give_the_light_of_the_same_choices():
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    bit, basis, intensity = _choices(64 * 9 + 30, SEED)
    model, twin = Fibre(bright(), tb, seed=SEED), Fibre(bright(), tb, seed=SEED)
    model.play(0, bit, basis, intensity)
    state, cls, laser, sync = _pins(bit, basis, intensity, tb.frame_slots)
    for start in range(0, bit.size, 64):          # in monitor words of 64 slots
        end = min(start + 64, bit.size)
        twin.play_pins(start, state[start:end], cls[start:end], laser[start:end],
                       sync[start:end], first_cycle=start * tb.slot_cycles,
                       ended=end == bit.size)
    _same(model.pump(), twin.pump())
    _same(model.flush(), twin.flush())
    assert twin.error is None and twin.stats["clicks"] == model.stats["clicks"] > 100, SEED


def test_no_laser_pulse_is_vacuum():
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    bit, basis, _ = _choices(640, SEED)
    intensity = np.zeros(640, np.int64)            # signal settings on every slot...
    fibre = Fibre(bright(), tb, seed=SEED)
    state, cls, laser, sync = _pins(bit, basis, intensity, tb.frame_slots)
    laser[1::2] = False                            # ...but the laser fired on even slots only
    fibre.play_pins(0, state, cls, laser, sync, first_cycle=0, ended=True)
    stretch = fibre.flush()
    origin = stretch.syncs[0] - fibre.sync_offset_bins
    slots = [(c - fibre.origin_bins) // tb.slot_bins for c in stretch.clicks]
    slots = np.concatenate(slots)
    assert origin == 0 and slots.size > 100 and np.all(slots % 2 == 0), SEED


def test_slot_period_and_frame_length_off_the_time_base_stop_the_fibre():
    tb = TimeBase(slot_cycles=8, frame_slots=64)
    bit, basis, intensity = _choices(128, SEED)
    state, cls, laser, sync = _pins(bit, basis, intensity, tb.frame_slots)
    fibre = Fibre(bright(), tb, seed=SEED)
    fibre.play_pins(0, state[:64], cls[:64], laser[:64], sync[:64], first_cycle=100)
    fibre.play_pins(64, state[64:], cls[64:], laser[64:], sync[64:], first_cycle=100 + 64 * 9)
    with pytest.raises(RuntimeError, match="slots of 9 clock cycles"):
        fibre.pump()
    state, cls, laser, sync = _pins(bit, basis, intensity, 32)   # frames of 32 slots
    fibre = Fibre(bright(), tb, seed=SEED)
    fibre.play_pins(0, state, cls, laser, sync, first_cycle=0)
    with pytest.raises(RuntimeError, match="frames of 32 slots"):
        fibre.pump()
