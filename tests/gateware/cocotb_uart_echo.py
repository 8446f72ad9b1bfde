"""cocotb tests for the UART echo top of ``test_uart_cocotb.py``: bytes on ``rx`` come back on
``tx`` through UARTRx, a FIFO and UARTTx. Random data uses cocotb's seed (COCOTB_RANDOM_SEED)."""

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles

from hil.bfm.uart import UARTSink, UARTSource

#: Bit period in clock cycles, set by the pytest runner.
DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
#: 48 MHz system clock, rounded to an even number of ps so both half periods are whole.
CLK_PERIOD_PS = 20_834


class TB:
    """Clock, reset and the UART models around the echo top."""

    def __init__(self, dut):
        self.dut = dut
        cocotb.start_soon(Clock(dut.clk, CLK_PERIOD_PS, unit="ps").start())
        self.source = UARTSource(dut.rx, dut.clk, DIVISOR)
        self.sink = UARTSink(dut.tx, dut.clk, DIVISOR)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    async def finish(self):
        """Let the line drain, then check that nothing is left over."""
        await ClockCycles(self.dut.clk, 30 * DIVISOR)
        assert self.sink.empty(), f"unexpected bytes: {bytes(self.sink.queue).hex()}"
        assert int(self.dut.overruns.value) == 0, "the echo FIFO must never overrun"


@cocotb.test()
async def test_echo_back_to_back(dut):
    """Random bytes sent with no idle time come back unchanged and in order."""
    tb = TB(dut)
    await tb.reset()
    data = random.randbytes(256)
    send = cocotb.start_soon(tb.source.send(data))
    got = await tb.sink.recv(len(data), timeout_cycles=(len(data) + 8) * 10 * DIVISOR)
    await send
    assert got == data, f"sent {data.hex()}\ngot  {got.hex()}"
    assert tb.sink.frame_errors == 0
    await tb.finish()


@cocotb.test()
async def test_echo_with_gaps(dut):
    """Bytes separated by random idle times come back unchanged."""
    tb = TB(dut)
    await tb.reset()
    data = random.randbytes(32)
    for byte in data:
        await tb.source.send(bytes([byte]), gap_cycles=random.randrange(0, 3 * DIVISOR))
    got = await tb.sink.recv(len(data), timeout_cycles=20 * 10 * DIVISOR)
    assert got == data
    await tb.finish()


@cocotb.test()
async def test_break_is_a_frame_error(dut):
    """A break (line held low) counts one framing error, echoes nothing, and the link recovers."""
    tb = TB(dut)
    await tb.reset()
    await tb.source.send_break(25 * DIVISOR)
    await ClockCycles(dut.clk, 4 * DIVISOR)
    assert int(dut.frame_errors.value) == 1
    await tb.source.send(b"\x00\x7e\xff")
    assert await tb.sink.recv_until(0xFF, timeout_cycles=50 * DIVISOR) == b"\x00\x7e\xff"
    await tb.finish()
