"""cocotb module for ``bench/link_rtl.py``: a sustained LOOPBACK stream through the link top's
UART pins on Verilator, timing what the gateware puts on its TX pin. Writes a JSON result to
``$LINK_RATE_OUT``."""

import json
import os
import random
import struct

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, Event, FallingEdge
from cocotb.utils import get_sim_time

from controller.link.codec import FrameDecoder, encode_frame
from gateware.spec.protocol import Opcode, StreamChannel, MAX_PAYLOAD
from gateware.spec.registers import REGISTER_MAP
from hil.bfm.uart import UARTSink, UARTSource

DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
CLK_PERIOD_PS = 20_834
FRAMES = int(os.environ.get("LINK_RATE_FRAMES", "32"))


@cocotb.test()
async def measure_loopback_rate(dut):
    cocotb.start_soon(Clock(dut.clk, CLK_PERIOD_PS, unit="ps").start())
    source = UARTSource(dut.rx, dut.clk, DIVISOR)
    sink = UARTSink(dut.tx, dut.clk, DIVISOR)
    dut.rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)

    decoder = FrameDecoder()
    await source.send(encode_frame(Opcode.WRITE.value, 0, struct.pack(
        ">HI", REGISTER_MAP.address("core.control"), 1)))
    await sink.recv_until(0, timeout_cycles=200 * 10 * DIVISOR)

    rng = random.Random(int(os.environ.get("COCOTB_RANDOM_SEED", "1")))
    chunk = MAX_PAYLOAD - 1
    data = rng.randbytes(FRAMES * chunk)
    frames = [encode_frame(Opcode.STREAM_H2D.value, (1 + i) & 0xFF,
                                 bytes([StreamChannel.LOOPBACK.value]) + data[i * chunk:(i + 1) * chunk])
              for i in range(FRAMES)]

    # Time stamps of TX start bits: the first and last byte the device sends.
    starts = []

    async def watch_tx():
        while True:
            await FallingEdge(dut.tx)
            starts.append(get_sim_time("ps"))
            await ClockCycles(dut.clk, 10 * DIVISOR - 1)

    cocotb.start_soon(watch_tx())
    # Credit-based flow control from the replies' free-space field: a frame is sent when the
    # room last reported, less the frames sent since, still holds it. This keeps the RX line
    # busy, so what the TX line shows is the gateware's own pace (the TX line carries more than
    # the RX line: each echoed frame plus a reply).
    state = {"free": int(os.environ["LOOPBACK_DEPTH"]), "in_flight": 0}
    credit = Event()

    async def sender():
        for frame in frames:
            # At most two frames unanswered: the link's RX FIFO (512 bytes) must hold the one
            # that arrives while the other waits for its reply to get onto the TX line.
            while state["free"] - state["in_flight"] < chunk or state["in_flight"] >= 2 * chunk:
                credit.clear()
                await credit.wait()
            state["in_flight"] += chunk
            await source.send(frame)

    cocotb.start_soon(sender())
    echoed, tx_bytes, replies = b"", 0, 0
    while len(echoed) < len(data) or replies < FRAMES:
        raw = await sink.recv_until(0, timeout_cycles=2000 * 10 * DIVISOR)
        tx_bytes += len(raw)
        for frame in decoder.feed(raw):
            if frame.opcode == Opcode.STREAM_D2H.value:
                echoed += frame.payload[1:]
            else:
                assert frame.opcode == Opcode.STREAM_H2D_REPLY.value, frame
                _, accepted, free = struct.unpack(">BHH", frame.payload)
                assert accepted == chunk, "the device refused a frame: flow control is wrong"
                replies += 1
                state["in_flight"] -= chunk
                state["free"] = free
                credit.set()
    assert echoed == data, "loopback data differs"
    assert decoder.errors == 0
    byte_time_ps = 10 * DIVISOR * CLK_PERIOD_PS
    span_bytes = (starts[-1] - starts[0]) / byte_time_ps + 1
    with open(os.environ["LINK_RATE_OUT"], "w") as out:
        json.dump({"payload_bytes": len(data), "tx_bytes": tx_bytes, "tx_byte_times": span_bytes,
                   "replies": replies}, out)
