"""UART (8N1) bus-functional models for cocotb: drive a receiver's pin, monitor a transmitter's.

Both count time in clock cycles of ``clock`` (the DUT clock), ``divisor`` cycles per bit, and
wait with ``ClockCycles`` so a bit costs one trigger rather than one per clock.
"""

import collections

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, Lock

__all__ = ["UARTSource", "UARTSink"]


class UARTSource:
    """Drive 8N1 bytes onto ``signal`` (a DUT input, idle high), ``divisor`` clock cycles a bit."""

    def __init__(self, signal, clock, divisor, *, stop_bits=1):
        self.signal = signal
        self.clock = clock
        self.divisor = divisor
        self.stop_bits = stop_bits
        self._lock = Lock()
        self.signal.value = 1

    async def send(self, data, *, gap_cycles=0):
        """Send ``data`` (bytes) back to back, then ``gap_cycles`` of idle line; return when the
        last stop bit has been driven."""
        async with self._lock:
            for byte in bytes(data):
                await self._send_byte(byte)
                if gap_cycles:
                    await ClockCycles(self.clock, gap_cycles)

    async def send_break(self, cycles):
        """Hold the line low for ``cycles`` clock cycles (a framing error for the receiver)."""
        async with self._lock:
            self.signal.value = 0
            await ClockCycles(self.clock, cycles)
            self.signal.value = 1

    async def _send_byte(self, byte):
        bits = [0] + [(byte >> n) & 1 for n in range(8)]
        for bit in bits:
            self.signal.value = bit
            await ClockCycles(self.clock, self.divisor)
        self.signal.value = 1
        await ClockCycles(self.clock, self.divisor * self.stop_bits)


class UARTSink:
    """Receive 8N1 bytes from ``signal`` (a DUT output, idle high) into a queue.

    A monitor task starts at construction: on each falling edge it samples the bits at mid-bit,
    ``divisor`` clock cycles apart. Bytes with a low stop bit are counted in ``frame_errors``
    and not queued.
    """

    def __init__(self, signal, clock, divisor):
        self.signal = signal
        self.clock = clock
        self.divisor = divisor
        self.queue = collections.deque()
        self.frame_errors = 0
        self.received = 0
        self._task = cocotb.start_soon(self._monitor())

    def empty(self):
        """Return whether no received byte is waiting in the queue."""
        return not self.queue

    def stop(self):
        """Stop the monitor task."""
        self._task.cancel()

    async def _monitor(self):
        half = self.divisor // 2
        while True:
            await FallingEdge(self.signal)
            await ClockCycles(self.clock, half)
            if self.signal.value != 0:
                continue  # a glitch shorter than half a bit, not a start bit
            byte = 0
            for n in range(8):
                await ClockCycles(self.clock, self.divisor)
                byte |= int(self.signal.value) << n
            await ClockCycles(self.clock, self.divisor)
            if self.signal.value == 1:
                self.queue.append(byte)
                self.received += 1
            else:
                self.frame_errors += 1

    async def _wait_for(self, done, timeout_cycles, what):
        waited = 0
        poll = 10 * self.divisor  # about one byte time
        while not done():
            if timeout_cycles is not None and waited >= timeout_cycles:
                raise TimeoutError(f"UARTSink: {what} not received within {timeout_cycles} "
                                   f"clock cycles; queued {bytes(self.queue).hex()}, "
                                   f"{self.frame_errors} framing errors")
            step = poll if timeout_cycles is None else min(poll, timeout_cycles - waited)
            await ClockCycles(self.clock, step)
            waited += step

    async def recv(self, n, timeout_cycles=None):
        """Return the next ``n`` received bytes; raise ``TimeoutError`` after ``timeout_cycles``
        clock cycles (``None``: wait forever)."""
        await self._wait_for(lambda: len(self.queue) >= n, timeout_cycles, f"{n} bytes")
        return bytes(self.queue.popleft() for _ in range(n))

    async def recv_until(self, byte, timeout_cycles=None):
        """Return the received bytes up to and including the first ``byte`` (an int)."""
        await self._wait_for(lambda: byte in self.queue, timeout_cycles, f"byte 0x{byte:02X}")
        out = bytearray()
        while True:
            out.append(self.queue.popleft())
            if out[-1] == byte:
                return bytes(out)
