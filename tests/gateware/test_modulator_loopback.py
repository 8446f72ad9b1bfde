"""Loopback: Alice's image drives Bob's image through an ideal channel, in one Amaranth simulation.

Both ``NodeCore`` images are driven through their links with wire frames, as a host would. The
channel is ideal: every laser pulse reaches the detector of the state sent (state k -> detector
k, Bob's default channel map), Alice's sync output is Bob's sync input. The host's record of the
choices it streamed, with Alice's REPORTS applied (``controller.alice.SentRecord``), must match
Bob's detections decoded by the host decoder (``controller.tagger.decode``) slot for slot: every
slot that fired the laser is one detection on the state's detector at the same slot of the same
frame, and no other slot has one.
"""

import struct

import numpy as np
from amaranth import Elaboratable, Module

from controller.alice import SentRecord, pack_choices, unpack_choices
from controller.tagger import decode
from gateware.spec.modulator import choice_fires
from gateware.spec.protocol import Opcode, StreamChannel
from gateware.spec.registers import REGISTER_MAP, Role
from gateware.spec.tagger import CHANNELS
from gateware.top import NodeCore

from gwsim import run
from test_link import wire, parse

SEED = 20261127
A = REGISTER_MAP.address
SLOT = 8            # clock cycles per slot (Bob: bins, one sample per clock)
FRAME = 16          # slots per frame


class Loopback(Elaboratable):
    """Alice's and Bob's cores, Alice's outputs wired to Bob's inputs (ideal channel)."""

    def __init__(self):
        self.alice = NodeCore(role=Role.ALICE, git_hash=1, flush_cycles=32, choices_depth=256)
        self.bob = NodeCore(role=Role.BOB, git_hash=2, flush_cycles=32, samples=1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.alice = alice = self.alice
        m.submodules.bob = bob = self.bob
        out = alice.alice
        for ch in range(CHANNELS):
            m.d.comb += bob.bob.det[ch].eq(out.laser & (out.state == ch))
        m.d.comb += bob.bob.sync.eq(out.sync)
        return m


def write(seq, path, value):
    return wire(Opcode.WRITE, seq, struct.pack(">HI", A(path), value))


def test_record_matches_bobs_detections():
    rng = np.random.default_rng(SEED)
    # Signal, decoy and vacuum mixed; 240 slots of choices, then an underflow tail.
    choices = pack_choices(rng.integers(0, 2, 240), rng.integers(0, 2, 240),
                           rng.choice([0, 0, 1, 2], 240))
    dut = Loopback()
    out = {"alice": bytearray(), "bob": bytearray()}
    script = {
        "bob": [write(1, "tagger.slot_period", SLOT), write(2, "tagger.frame_slots", FRAME),
                write(3, "tagger.control", 1)],
        "alice": [write(1, "modulator.slot_period", SLOT), write(2, "modulator.frame_slots", FRAME),
                  wire(Opcode.STREAM_H2D, 3, bytes([StreamChannel.CHOICES.value]) + choices),
                  300, write(4, "modulator.control", 1), 300 * SLOT,
                  write(5, "modulator.control", 0)],
    }

    def host(name, core):
        async def drive(ctx):
            if name == "alice":
                await ctx.tick().repeat(400)        # Bob is enabled first
            for raw in script[name]:
                if isinstance(raw, int):
                    await ctx.tick().repeat(raw)
                    continue
                for byte in raw:
                    ctx.set(core.i_rx.valid, 1)
                    ctx.set(core.i_rx.payload, byte)
                    await ctx.tick()
                ctx.set(core.i_rx.valid, 0)
            await ctx.tick().repeat(3000)
        return drive

    def sink(name, core):
        async def collect(ctx):
            ctx.set(core.o_tx.ready, 1)
            async for _, _, valid, payload in ctx.tick().sample(core.o_tx.valid, core.o_tx.payload):
                if valid:
                    out[name].append(payload)
        return collect

    run(dut, host("alice", dut.alice), host("bob", dut.bob),
        background=[sink("alice", dut.alice), sink("bob", dut.bob)],
        deadline_cycles=60_000, name="loopback")

    def stream(name, channel):
        return b"".join(f[2][1:] for f in parse(bytes(out[name]))
                        if f[0] == Opcode.STREAM_D2H.value and f[2][0] == channel.value)

    record = SentRecord()
    record.add(*unpack_choices(choices))
    record.apply_reports(stream("alice", StreamChannel.REPORTS))
    sent = record.slots()
    events = decode(stream("bob", StreamChannel.EVENTS))
    assert len(record.runs) == 1 and record.stopped and not record.insecure
    first = record.runs[0][0]
    assert sent["usable"][:240].all() and not sent["usable"][240:].any(), "underflow tail expected"

    # Alice's slot n of the run is slot n % FRAME of frame n // FRAME; Bob numbers frames from
    # the first origin he saw, which is the run's first frame.
    fired = np.array([bool(u) and choice_fires(int(b) | int(s) << 1 | int(i) << 2)
                      for u, b, s, i in zip(sent["usable"], sent["bit"], sent["basis"],
                                            sent["intensity"])])
    state = sent["bit"] | sent["basis"] << 1
    n = sent["slot"] - first
    want = {(int(f), int(s)): 1 << int(k) for f, s, k, hit in
            zip(n // FRAME, n % FRAME, state, fired) if hit}
    got = {}
    for frame, slot, mask in zip(events.frame, events.slot, events.mask):
        assert (int(frame), int(slot)) not in got, f"two detections for frame {frame} slot {slot}"
        got[(int(frame), int(slot))] = int(mask)
    frame0 = min(f for f, _ in got) if got else 0
    got = {(f - frame0, s): m for (f, s), m in got.items()}
    assert len(want) > 100, "the choices should fire the laser in many slots"
    missing = sorted(set(want) - set(got))[:5]
    extra = sorted(set(got) - set(want))[:5]
    assert not missing and not extra, f"seed {SEED}: missing {missing}, extra {extra}"
    for key, mask in want.items():
        assert got[key] == mask, f"seed {SEED}: frame/slot {key}: Bob saw mask {got[key]:04b}, Alice sent {mask:04b}"
    assert len(set(events.phase.tolist())) == 1, f"phases {set(events.phase.tolist())}: one phase expected"
    print(f"{len(want)} detections matched over {len(sent['slot'])} slots, phase {events.phase[0]}")
