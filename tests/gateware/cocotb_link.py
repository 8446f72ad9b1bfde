"""cocotb tests of the whole link top (``gateware.top.NodeTop``) on Verilator, through its UART
pins at 12 Mbaud from a 48 MHz clock: the host codec's frames in, the replies decoded by the host
codec out. Random data uses cocotb's seed (COCOTB_RANDOM_SEED), printed on failure."""

import json
import os
import random
import struct
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from controller.link.codec import FrameDecoder, encode_frame
from gateware.spec.protocol import Opcode, StreamChannel, MAX_PAYLOAD
from gateware.spec.registers import REGISTER_MAP, DEVICE_ID
from hil.bfm.uart import UARTSink, UARTSource

DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
CLK_PERIOD_PS = 20_834
VECTORS = Path(os.environ["LINK_VECTORS"])
A = REGISTER_MAP.address
#: Clock cycles per UART byte (start, 8 data, stop bits).
BYTE_CYCLES = 10 * DIVISOR


class TB:
    """Clock, reset, UART models and the host codec around the link top."""

    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, CLK_PERIOD_PS, unit="ps").start())
        self.source = UARTSource(dut.rx, dut.clk, DIVISOR)
        self.sink = UARTSink(dut.tx, dut.clk, DIVISOR)
        self.decoder = FrameDecoder()

    async def reset(self):
        self.dut.rx.value = 1
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    async def frames(self, n, timeout_bytes=400):
        """Return the next ``n`` frames the device sends, decoded by the host codec."""
        got = []
        while len(got) < n:
            raw = await self.sink.recv_until(0, timeout_cycles=timeout_bytes * BYTE_CYCLES)
            got += self.decoder.feed(raw)
        assert self.decoder.errors == 0, f"device sent {self.decoder.errors} corrupt frames"
        return got

    async def request(self, opcode, seq, payload=b""):
        await self.source.send(encode_frame(int(getattr(opcode, "value", opcode)), seq, payload))
        frame, = await self.frames(1)
        assert frame.seq == seq, f"reply to seq {seq} has seq {frame.seq}"
        return frame

    async def finish(self):
        """Let the line drain, then check nothing unexpected is left."""
        await ClockCycles(self.dut.clk, 40 * BYTE_CYCLES)
        assert self.sink.empty(), f"unexpected bytes from the device: {bytes(self.sink.queue).hex()}"
        assert self.sink.frame_errors == 0


@cocotb.test()
async def test_shared_vectors(dut):
    """The shared session, through the pins: byte-exact replies, silence for dropped frames."""
    tb = TB(dut)
    await tb.reset()
    for step in json.loads(VECTORS.read_text())["steps"]:
        await tb.source.send(bytes.fromhex(step["request"]))
        if step["reply"] is None:
            await ClockCycles(dut.clk, 30 * BYTE_CYCLES)
            assert tb.sink.empty(), f"{step['note']}: the device answered a frame it must drop"
        else:
            got = await tb.sink.recv_until(0, timeout_cycles=60 * BYTE_CYCLES)
            assert got.hex() == step["reply"], f"{step['note']}: got {got.hex()}"
    await tb.finish()


@cocotb.test()
async def test_back_to_back_requests(dut):
    """Requests sent with no gap between them (a pipelined host): every one answered, in order."""
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(int(os.environ.get("COCOTB_RANDOM_SEED", "1")))
    scratch = A("core.scratch")
    values = [rng.getrandbits(32) for _ in range(12)]
    burst = b""
    for i, value in enumerate(values):
        burst += encode_frame(Opcode.WRITE.value, 2 * i, struct.pack(">HI", scratch, value))
        burst += encode_frame(Opcode.READ.value, 2 * i + 1, struct.pack(">H", scratch))
    await tb.source.send(burst)
    frames = await tb.frames(2 * len(values))
    assert [f.seq for f in frames] == list(range(2 * len(values)))
    for i, value in enumerate(values):
        assert frames[2 * i].opcode == Opcode.WRITE_REPLY.value
        assert frames[2 * i + 1].payload == struct.pack(">HI", scratch, value)
    await tb.finish()


@cocotb.test()
async def test_corruption_then_recovery(dut):
    """Random garbage and corrupted frames between valid ones: only valid ones are answered,
    and the drops show in the link counters."""
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(int(os.environ.get("COCOTB_RANDOM_SEED", "1")) + 1)
    sent_valid = 0
    for seq in range(8):
        good = encode_frame(Opcode.READ.value, seq, struct.pack(">H", A("core.id")))
        bad = bytearray(good)
        bad[rng.randrange(1, len(bad) - 1)] ^= 1 << rng.randrange(8)
        if 0 in bad[:-1]:
            bad = bytearray(good[:-3] + b"\x01\x00")  # keep exactly one frame's worth
        garbage = bytes(rng.randrange(1, 256) for _ in range(rng.randrange(1, 30))) + b"\0"
        await tb.source.send(bytes(bad) + garbage + good)
        frame, = await tb.frames(1)
        sent_valid += 1
        assert (frame.seq, frame.payload) == (seq, struct.pack(">HI", A("core.id"), DEVICE_ID))
    frame = await tb.request(Opcode.BURST_READ, 100, struct.pack(">HB", A("link.rx_frames"), 6))
    rx, tx, crc_err, cobs_err, uart_err, bad_req = struct.unpack(">6I", frame.payload[3:])
    assert rx == sent_valid + 1 and uart_err == 0 and bad_req == 0
    assert crc_err + cobs_err >= 8, f"corrupted frames not counted: crc {crc_err} cobs {cobs_err}"
    await tb.finish()


@cocotb.test()
async def test_loopback_stream(dut):
    """Stream bytes in on LOOPBACK, get them back as STREAM_D2H frames with gapless numbers."""
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(int(os.environ.get("COCOTB_RANDOM_SEED", "1")) + 2)
    await tb.request(Opcode.WRITE, 0, struct.pack(">HI", A("core.control"), 1))
    data = bytes(rng.randrange(256) for _ in range(3 * (MAX_PAYLOAD - 1)))
    echoed, seq, d2h_seq = b"", 1, []
    chunk = MAX_PAYLOAD - 1
    for start in range(0, len(data), chunk):
        await tb.source.send(encode_frame(Opcode.STREAM_H2D.value, seq,
                                          bytes([StreamChannel.LOOPBACK.value]) + data[start:start + chunk]))
        seq += 1
    replies = 0
    while replies < 3 or len(echoed) < len(data):
        for frame in await tb.frames(1, timeout_bytes=1000):
            if frame.opcode == Opcode.STREAM_D2H.value:
                d2h_seq.append(frame.seq)
                echoed += frame.payload[1:]
            else:
                assert frame.opcode == Opcode.STREAM_H2D_REPLY.value, frame
                replies += 1
    assert echoed == data
    assert d2h_seq == list(range(len(d2h_seq)))
    await tb.finish()
