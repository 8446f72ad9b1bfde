"""Amaranth-simulator tests of Alice's modulator core, scored slot by slot against the model,
and of the ALICE role inside ``NodeCore`` through the link."""

import random
import struct

import pytest
from amaranth.hdl import Value

from gateware.cores.modulator import Modulator
from gateware.spec.modulator import (
    LFSR_WIDTH, lfsr_step, lfsr_choices, ReportLayout, ReportKind, REPORT_BYTES,
)
from gateware.spec.protocol import Opcode, StreamChannel
from gateware.spec.registers import REGISTER_MAP, Role
from gateware.top import NodeCore

from cocotb_modulator_scenarios import (scenarios, expected, decode_reports, CHOICES_DEPTH,
                                        pulse_offsets_ok)
from gwsim import feed_bytes, run, stream_put
from test_link import wire, parse

SEED = 20261127


def simulate(script):
    """Run ``script`` on a Modulator; return (slots, pulses, report bytes, underflow_slots).

    ``slots`` has ``(state, intensity, laser, sync)`` per slot, ``pulses`` the cycle offsets of
    each slot's laser and sync pulses.
    """
    dut = Modulator(choices_depth=CHOICES_DEPTH, reports_depth=64)
    slots, pulses, reports, result = [], [], bytearray(), {}
    config = {}

    async def driver(ctx):
        for step in script:
            if step[0] == "set":
                config[step[1]] = step[2]
                ctx.set(Value.cast(getattr(dut, step[1])), step[2])
                await ctx.tick()   # a run starts now: its first slot is not one to wait for
            elif step[0] == "push":
                for byte in step[1]:
                    await stream_put(ctx, dut.i_choices, byte)
            elif step[0] == "slots":
                for _ in range(step[1]):
                    await ctx.tick().until(dut.slot_start)
            elif step[0] == "idle":
                await ctx.tick().until(~dut.status.running)
                await ctx.tick().repeat(4 * REPORT_BYTES)
        await ctx.tick().repeat(200)
        result["underflow_slots"] = ctx.get(dut.underflow_slots)
        result["running"] = ctx.get(dut.status.running)

    async def monitor(ctx):
        new = False
        offset = 0
        async for _, _, start, state, intensity, laser, sync in ctx.tick().sample(
                dut.slot_start, dut.pins.state, dut.pins.intensity, dut.pins.laser, dut.pins.sync):
            if new:
                slots.append([state, intensity.value, 0, 0])
                pulses.append(([], []))
                offset, new = 0, False
            elif slots:
                offset += 1
            if slots and laser:
                pulses[-1][0].append(offset)
            if slots and sync:
                pulses[-1][1].append(offset)
            new = bool(start)

    async def report_sink(ctx):
        ctx.set(dut.o_reports.ready, 1)
        async for _, _, valid, payload in ctx.tick().sample(dut.o_reports.valid, dut.o_reports.payload):
            if valid:
                reports.append(payload)

    run(dut, driver, background=[monitor, report_sink], deadline_cycles=20_000, name="modulator")
    for slot, (laser, sync) in zip(slots, pulses):
        slot[2], slot[3] = int(bool(laser)), int(bool(sync))
    return [tuple(s) for s in slots], pulses, bytes(reports), result, config


@pytest.mark.parametrize("name", ["prefill_then_underflow", "underflow_refill", "two_runs", "lfsr"])
def test_core_matches_model(name):
    script = scenarios(SEED)[name]
    slots, pulses, reports, result, config = simulate(script)
    want_slots, want_reports, want_underflow = expected(script)
    where = f"scenario {name}, seed {SEED}"
    assert len(slots) == len(want_slots), f"{where}: {len(slots)} slots played, model {len(want_slots)}"
    for i, (got, want) in enumerate(zip(slots, want_slots)):
        assert got == want, f"{where}: slot {i}: pins (state, intensity, laser, sync) {got}, model {want}"
    assert decode_reports(reports) == decode_reports(want_reports), where
    assert result["underflow_slots"] == want_underflow and result["running"] == 0
    delay, width = config["trigger_delay"], config["trigger_width"]
    for i, ((laser, sync), slot) in enumerate(zip(pulses, slots)):
        assert pulse_offsets_ok(laser, slot[2], delay, width), f"{where}: slot {i} laser at {laser}"
        assert pulse_offsets_ok(sync, slot[3], delay, width), f"{where}: slot {i} sync at {sync}"


def test_scenarios_exercise_what_they_claim():
    """The scripts really produce underflows, refills, two runs and a flagged LFSR run."""
    reports = {name: decode_reports(expected(script)[1]) for name, script in scenarios(SEED).items()}
    kinds = {name: [r[0] for r in recs] for name, recs in reports.items()}
    assert kinds["prefill_then_underflow"] == ["START", "UNDERFLOW", "STOP"]
    assert kinds["underflow_refill"].count("UNDERFLOW") == 3
    assert kinds["two_runs"] == ["START", "STOP", "START", "STOP"]
    assert kinds["lfsr"] == ["START", "STOP"] and all(r[1] == 1 for r in reports["lfsr"])
    assert all(r[1] == 0 for name in ("prefill_then_underflow", "two_runs") for r in reports[name])


def test_lfsr_reference_is_maximal_on_a_short_check():
    # The state never returns to the seed within many steps, and never locks up at 0.
    state, seen_zero = 1, False
    for _ in range(100_000):
        state = lfsr_step(state)
        seen_zero |= state == 0
        assert state != 1
    assert not seen_zero and state < 1 << LFSR_WIDTH
    assert lfsr_choices(0, 8) == lfsr_choices(1, 8)


def test_report_record_layout():
    assert REPORT_BYTES == 12
    value = ReportLayout.const({"kind": ReportKind.UNDERFLOW, "lfsr": 1, "first_slot": 0x123456789AB,
                                "count": 7}).as_value().value
    raw = value.to_bytes(REPORT_BYTES, "little")
    assert raw[0] == ReportKind.UNDERFLOW.value and raw[1] == 1
    assert decode_reports(raw) == [("UNDERFLOW", 1, 0x123456789AB, 7)]


def _alice_session(requests, settle=6000):
    dut = NodeCore(role=Role.ALICE, clk_hz=48_000_000, git_hash=1, flush_cycles=32,
                   choices_depth=64)
    out = bytearray()
    pins = []

    async def host(ctx):
        await feed_bytes(ctx, dut.i_rx, requests)
        await ctx.tick().repeat(settle)

    async def sink(ctx):
        ctx.set(dut.o_tx.ready, 1)
        async for _, _, valid, payload, laser in ctx.tick().sample(
                dut.o_tx.valid, dut.o_tx.payload, dut.alice.laser):
            if valid:
                out.append(payload)
            pins.append(laser)

    run(dut, host, background=[sink], deadline_cycles=200_000, name="alice_core")
    return parse(bytes(out)), pins


def test_node_core_alice_role_through_the_link():
    """CHOICES in, control.run through registers, REPORTS frames out; the role reads back."""
    A = REGISTER_MAP.address
    rng = random.Random(SEED)
    # Every choice fires (intensity signal or decoy), so each played slot pulses the laser.
    data = bytes(rng.choice([0x00, 0x11, 0x44, 0x55, 0x23, 0x76]) for _ in range(10))
    frames, laser = _alice_session([
        wire(Opcode.STREAM_H2D, 1, bytes([StreamChannel.CHOICES.value]) + data),
        wire(Opcode.WRITE, 2, struct.pack(">HI", A("modulator.slot_period"), 8)),
        wire(Opcode.WRITE, 3, struct.pack(">HI", A("modulator.control"), 1)),
        400,
        wire(Opcode.WRITE, 4, struct.pack(">HI", A("modulator.control"), 0)),
        wire(Opcode.READ, 5, struct.pack(">H", A("core.platform"))),
        wire(Opcode.READ, 6, struct.pack(">H", A("modulator.underflow_slots"))),
    ])
    replies = {f[1]: f for f in frames if f[0] != Opcode.STREAM_D2H.value}
    assert struct.unpack(">BHH", replies[1][2]) == (StreamChannel.CHOICES.value, 10, 64 - 10)
    platform = REGISTER_MAP["core.platform"].layout.from_bits(struct.unpack(">HI", replies[5][2])[1])
    assert platform.role == Role.ALICE and platform.channels == 3
    underflows = struct.unpack(">HI", replies[6][2])[1]
    reports = b"".join(f[2][1:] for f in frames if f[0] == Opcode.STREAM_D2H.value
                       and f[2][0] == StreamChannel.REPORTS.value)
    records = decode_reports(reports)
    assert [r[0] for r in records] == ["START", "UNDERFLOW", "STOP"]
    start, uf, stop = records
    assert uf[2] == start[2] + 2 * len(data) and uf[3] == underflows
    assert stop[3] == 2 * len(data) + underflows
    # One laser pulse (trigger_width 1) per slot that had a choice.
    rising = sum(1 for a, b in zip(laser, laser[1:]) if b and not a)
    assert rising == 2 * len(data)
