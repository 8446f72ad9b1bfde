"""Amaranth-simulator tests of the link core inside ``NodeCore``: frames in, replies out.

Frames are built with the spec's reference CRC and COBS (not the host codec), so these tests
check the gateware against the spec alone.
"""

import random
import struct

import pytest

from gateware.spec.cobs import cobs_encode, cobs_decode
from gateware.spec.protocol import (crc16, Opcode, ErrorCode, StreamChannel, MAX_BURST,
                                    MAX_PAYLOAD)
from gateware.spec.registers import REGISTER_MAP, DEVICE_ID
from gateware.top import NodeCore

from gwsim import feed_bytes, run

A = REGISTER_MAP.address


def wire(opcode, seq, payload=b""):
    body = bytes([int(getattr(opcode, "value", opcode)), seq]) + bytes(payload)
    return cobs_encode(body + crc16(body).to_bytes(2, "big")) + b"\0"


def parse(raw):
    """Split device output into (opcode, seq, payload) frames, checking each CRC."""
    frames = []
    for chunk in raw.split(b"\0")[:-1]:
        body = cobs_decode(chunk)
        assert crc16(body) == 0, f"device sent a frame with a bad CRC: {body.hex()}"
        frames.append((body[0], body[1], body[2:-2]))
    assert raw.endswith(b"\0") or raw == b"", "device output ends mid-frame"
    return frames


def simulate(requests, *, seed=0, gap=0, p_stall=0.0, settle=3000, loopback_depth=512):
    """Send wire ``requests`` (bytes, or an int: idle cycles) to a NodeCore, return its output."""
    dut = NodeCore(clk_hz=48_000_000, git_hash=0x1234ABCD, loopback_depth=loopback_depth,
                   flush_cycles=32)
    rng = random.Random(seed)
    out = bytearray()

    async def host(ctx):
        await feed_bytes(ctx, dut.i_rx, requests, gap=gap)
        await ctx.tick().repeat(settle)

    async def sink(ctx):
        while True:
            ctx.set(dut.o_tx.ready, 0 if rng.random() < p_stall else 1)
            _, _, valid, ready, payload = await ctx.tick().sample(
                dut.o_tx.valid, dut.o_tx.ready, dut.o_tx.payload)
            if valid and ready:
                out.append(payload)

    run(dut, host, background=[sink], deadline_cycles=2_000_000, name=f"link_{seed}")
    return bytes(out)


def test_read_id_and_version():
    frames = parse(simulate([wire(Opcode.READ, 7, struct.pack(">H", A("core.id"))),
                             wire(Opcode.READ, 8, struct.pack(">H", A("core.git_hash")))]))
    assert frames == [
        (Opcode.READ_REPLY.value, 7, struct.pack(">HI", A("core.id"), DEVICE_ID)),
        (Opcode.READ_REPLY.value, 8, struct.pack(">HI", A("core.git_hash"), 0x1234ABCD)),
    ]


def test_write_then_read_scratch_and_burst():
    scratch = A("core.scratch")
    frames = parse(simulate([
        wire(Opcode.WRITE, 1, struct.pack(">HI", scratch, 0xDEADBEEF)),
        wire(Opcode.READ, 2, struct.pack(">H", scratch)),
        wire(Opcode.BURST_READ, 3, struct.pack(">HB", A("core.id"), 2)),
    ]))
    assert frames[0] == (Opcode.WRITE_REPLY.value, 1, struct.pack(">H", scratch))
    assert frames[1] == (Opcode.READ_REPLY.value, 2, struct.pack(">HI", scratch, 0xDEADBEEF))
    version = REGISTER_MAP["core.version"].init
    assert frames[2] == (Opcode.BURST_READ_REPLY.value, 3,
                         struct.pack(">HBII", A("core.id"), 2, DEVICE_ID, version))


@pytest.mark.parametrize("request_, code, detail", [
    ((Opcode.READ, b"\x00"), ErrorCode.BAD_LENGTH, 1),
    ((Opcode.READ, struct.pack(">H", 0x00FF)), ErrorCode.BAD_ADDRESS, 0x00FF),
    ((Opcode.WRITE, struct.pack(">HI", A("core.id"), 1)), ErrorCode.READ_ONLY, A("core.id")),
    ((Opcode.BURST_READ, struct.pack(">HB", 0, 0)), ErrorCode.BAD_COUNT, 0),
    ((Opcode.BURST_READ, struct.pack(">HB", 0, MAX_BURST + 1)), ErrorCode.BAD_COUNT, MAX_BURST + 1),
    # A burst running off the end of the core block stops at the first unmapped address.
    ((Opcode.BURST_READ, struct.pack(">HB", A("core.status"), 3)), ErrorCode.BAD_ADDRESS,
     A("core.status") + 1),
    ((Opcode.STREAM_H2D, bytes([StreamChannel.LOOPBACK.value, 1, 2])), ErrorCode.BAD_CHANNEL, 0),
    ((Opcode.STREAM_H2D, bytes([StreamChannel.EVENTS.value])), ErrorCode.BAD_CHANNEL, 1),
    ((Opcode.STREAM_D2H, b"\x00"), ErrorCode.BAD_OPCODE, 0),
    ((0x42, b""), ErrorCode.BAD_OPCODE, 0),
])
def test_error_replies(request_, code, detail):
    opcode, payload = request_
    frames = parse(simulate([wire(opcode, 9, payload),
                             wire(Opcode.READ, 10, struct.pack(">H", A("link.bad_requests")))]))
    op_value = int(getattr(opcode, "value", opcode))
    assert frames[0] == (Opcode.ERROR.value, 9, struct.pack(">BBH", op_value, code.value, detail))
    assert frames[1][2] == struct.pack(">HI", A("link.bad_requests"), 1)


def test_corrupt_frames_are_dropped_and_counted():
    good = wire(Opcode.WRITE, 1, struct.pack(">HI", A("core.scratch"), 5))
    body = bytes([Opcode.WRITE.value, 2]) + struct.pack(">HI", A("core.scratch"), 6)
    bad_crc = cobs_encode(body + (crc16(body) ^ 0x0400).to_bytes(2, "big")) + b"\0"
    bad_cobs = bytes([0x05, 0x01, 0x02]) + b"\0"          # block announces 4 bytes, has 2
    too_short = cobs_encode(b"\x01\x02\x03") + b"\0"
    too_long = cobs_encode(bytes(range(1, 256)) * 2) + b"\0"
    garbage = bytes(random.Random(3).randrange(1, 256) for _ in range(40)) + b"\0"
    counters = wire(Opcode.BURST_READ, 3, struct.pack(">HB", A("link.rx_frames"), 6))
    frames = parse(simulate([good, bad_crc, bad_cobs, too_short, too_long, garbage,
                             wire(Opcode.READ, 4, struct.pack(">H", A("core.scratch"))), counters]))
    assert [f[1] for f in frames] == [1, 4, 3], "only valid frames are answered"
    assert frames[1][2] == struct.pack(">HI", A("core.scratch"), 5), "the bad-CRC write ran"
    rx, tx, crc_err, cobs_err, uart_err, bad = struct.unpack(">6I", frames[2][2][3:])
    assert (rx, tx, uart_err, bad) == (3, 2, 0, 0)
    # bad COBS, too short, too long; the garbage run decodes as one malformed or bad-CRC frame.
    assert crc_err >= 1 and cobs_err >= 3 and cobs_err + crc_err == 5


def test_retried_write_and_stream_are_not_executed_twice():
    control = A("core.control")
    enable = wire(Opcode.WRITE, 1, struct.pack(">HI", control, 1))
    data = bytes(range(1, 40))
    stream_req = wire(Opcode.STREAM_H2D, 2, bytes([StreamChannel.LOOPBACK.value]) + data)
    frames = parse(simulate([enable, enable, stream_req, stream_req,
                             wire(Opcode.READ, 3, struct.pack(">H", A("link.rx_frames")))]))
    replies = [f for f in frames if f[0] != Opcode.STREAM_D2H.value]
    echoed = b"".join(f[2][1:] for f in frames if f[0] == Opcode.STREAM_D2H.value)
    assert [f[:2] for f in replies] == [(0x82, 1), (0x82, 1), (0x90, 2), (0x90, 2), (0x81, 3)]
    for reply in replies[2:4]:
        channel, accepted, free = struct.unpack(">BHH", reply[2])
        assert (channel, accepted) == (0, len(data))
    assert echoed == data, "the retried stream frame was taken twice or lost"
    assert replies[4][2] == struct.pack(">HI", A("link.rx_frames"), 5)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_loopback_stream_back_to_back(seed):
    """Random stream frames back to back with a stalling sink: every byte comes back in order."""
    rng = random.Random(seed)
    requests = [wire(Opcode.WRITE, 0, struct.pack(">HI", A("core.control"), 1))]
    sent = bytearray()
    for seq in range(1, 6):
        chunk = bytes(rng.randrange(256) for _ in range(rng.randrange(1, MAX_PAYLOAD)))
        sent += chunk
        requests.append(wire(Opcode.STREAM_H2D, seq, bytes([0]) + chunk))
    # Bytes arrive at the UART's pace: 12 Mbaud 8N1 from a 48 MHz clock is 40 cycles a byte.
    frames = parse(simulate(requests, seed=seed, gap=39, p_stall=0.3, settle=6000,
                            loopback_depth=2048))
    replies = [f for f in frames if f[0] != Opcode.STREAM_D2H.value]
    d2h = [f for f in frames if f[0] == Opcode.STREAM_D2H.value]
    assert len(replies) == 6 and all(r[0] in (0x82, 0x90) for r in replies), f"seed {seed}"
    assert [f[1] for f in d2h] == list(range(len(d2h))), f"seed {seed}: D2H sequence has gaps"
    assert all(f[2][0] == StreamChannel.LOOPBACK.value for f in d2h)
    assert b"".join(f[2][1:] for f in d2h) == bytes(sent), f"seed {seed}"


def test_stream_full_takes_nothing():
    requests = [wire(Opcode.WRITE, 0, struct.pack(">HI", A("core.control"), 1)),
                wire(Opcode.STREAM_H2D, 1, bytes([0]) + bytes(100))]
    frames = parse(simulate(requests, loopback_depth=64))
    assert frames[1] == (Opcode.ERROR.value, 1,
                         struct.pack(">BBH", Opcode.STREAM_H2D.value, ErrorCode.STREAM_FULL.value, 64))


def test_receive_overrun_is_counted_not_silent():
    """Bytes faster than the link can drain overflow the RX FIFO: lost bytes are counted."""
    requests = [wire(Opcode.WRITE, 0, struct.pack(">HI", A("core.control"), 1))]
    requests += [wire(Opcode.STREAM_H2D, seq, bytes([0]) + bytes([seq]) * 200) for seq in range(1, 9)]
    requests += [20000, b"\0", wire(Opcode.BURST_READ, 99, struct.pack(">HB", A("link.rx_frames"), 6))]
    frames = parse(simulate(requests, p_stall=0.6, settle=1000))
    answered = [f for f in frames if f[0] != Opcode.STREAM_D2H.value]
    assert answered[-1][:2] == (Opcode.BURST_READ_REPLY.value, 99)
    rx, tx, crc_err, cobs_err, uart_err, bad = struct.unpack(">6I", answered[-1][2][3:])
    assert len(answered) < 10, "the flood was expected to overrun the receive FIFO"
    assert uart_err > 0, "lost bytes were not counted"
    # Frames that lost their delimiter merge with the next one, so one error may cover several.
    assert rx == len(answered) and crc_err + cobs_err >= 1, "damaged frames must be counted"


def test_shared_vectors_replayed_byte_exact():
    """The shared session (tests/vectors/link_session.json) through the gateware: each request's
    reply, byte for byte, and no reply where the vectors say the frame is dropped."""
    import json
    from pathlib import Path
    session = json.loads((Path(__file__).parents[1] / "vectors" / "link_session.json").read_text())
    requests, expected = [], b""
    for step in session["steps"]:
        requests += [bytes.fromhex(step["request"]), 400]
        expected += bytes.fromhex(step["reply"]) if step["reply"] else b""
    got = simulate(requests, settle=500)
    assert parse(got) == parse(expected)
    assert got == expected
