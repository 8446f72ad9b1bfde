"""Register sanity on both boards: identity, roles, scratch round trips, access rules."""

import numpy as np
import pytest

from controller.link.errors import DeviceError
from gateware.spec.registers import DEVICE_ID, REGISTER_MAP


@pytest.fixture(params=["alice", "bob"])
def board(request, bench):
    return request.param, getattr(bench, request.param)


def test_identity_and_role(board):
    name, dev = board
    info = dev.info()
    assert info["role"] == name.upper(), f"{name}'s board runs the {info['role']} image"
    assert dev.read("core.id") == DEVICE_ID
    assert info["clk_hz"] > 0


def test_scratch_round_trips(board, seed):
    name, dev = board
    rng = np.random.default_rng(seed)
    for value in [0, 0xFFFF_FFFF, 0xA5A5_5A5A] + [int(v) for v in rng.integers(0, 2**32, 32)]:
        dev.write("core.scratch", value)
        assert dev.read("core.scratch") == value, f"{name}: scratch {value:#010x} (seed {seed})"


def test_read_only_register_refuses_writes(board):
    name, dev = board
    before = dev.read("core.id")
    with pytest.raises(DeviceError):
        dev.link.write(REGISTER_MAP.address("core.id"), 0x1234)
    assert dev.read("core.id") == before
    assert dev.read("link.bad_requests") >= 1


def test_unmapped_address_is_refused(board):
    name, dev = board
    free = next(a for a in range(0xFFFF, 0, -1) if REGISTER_MAP.at(a) is None)
    with pytest.raises(DeviceError):
        dev.link.read(free)


def test_role_registers_keep_their_values(bench):
    """Bob's tagger and Alice's modulator settings read back as written."""
    tb = bench.timebase
    bench.configure_bob(gate_start=3, gate_width=7, dead_time=[1, 2, 3, 4])
    t = bench.bob
    assert t.read("tagger.slot_period") == tb.slot_bins
    assert t.read("tagger.frame_slots") == tb.frame_slots
    assert t.fields("tagger.gate")["start"] == 3 and t.fields("tagger.gate")["width"] == 7
    assert [t.read("tagger.dead_time", index=ch) for ch in range(4)] == [1, 2, 3, 4]
    bench.configure_bob()
    bench.alice.write("modulator.slot_period", tb.slot_cycles)
    bench.alice.write("modulator.frame_slots", tb.frame_slots)
    assert bench.alice.read("modulator.slot_period") == tb.slot_cycles
    assert bench.alice.read("modulator.frame_slots") == tb.frame_slots
    assert bench.alice.read("modulator.choices_depth") > 0
