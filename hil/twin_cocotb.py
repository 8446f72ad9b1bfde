"""cocotb side of the RTL twin (``hil.twin``): bridges a TCP socket on 127.0.0.1 to the UART pins
of the gateware top running in Verilator. Bytes from the TCP client are driven onto ``rx``;
bytes the gateware sends on ``tx`` go back to the client.

With ``TWIN_CLICKS`` set (Bob), a second socket takes stretches of click and sync times (wire
format in ``hil.twin``); ``ClickPlayer`` drives them onto ``bob__det__<ch>`` and ``bob__sync``
through the detector BFM's schedule, waiting between two changes with one ``Timer`` (no Python
per idle clock), and leaves a gap of the requested bins after each stretch.

Simulated time only advances while there is work or in idle steps of ``IDLE_CYCLES`` (one timer
each); while the line is quiet and no light is queued the loop blocks in ``select`` (the simulator
waits with it), so an idle twin costs no CPU. Configuration comes from the environment set by
``hil.twin``.
"""

import os
import select
import socket
import struct
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer
from cocotb.utils import get_sim_time

from hil.bfm.uart import UARTSink, UARTSource

DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
CLK_PERIOD_PS = int(os.environ.get("TWIN_CLK_PERIOD_PS", "20834"))
SAMPLES = int(os.environ.get("TWIN_SAMPLES", "2"))
CLICKS = bool(os.environ.get("TWIN_CLICKS"))
#: Keep simulating while a clicks client is connected (a realtime testbed clocks Alice from
#: the twin's time, reported every REPORT_CYCLES), instead of idling in wall time.
FREE_RUN = bool(os.environ.get("TWIN_FREE_RUN"))
REPORT_CYCLES = 20_000
#: Clock cycles simulated per idle step: 16 UART byte-times, so device-to-host data that the
#: gateware produces on its own (a stream flush) still reaches the client promptly.
IDLE_CYCLES = 16 * 10 * DIVISOR
#: Clock cycles between a stretch's arrival and its first pin change.
LEAD_CYCLES = 64
_STRETCH = struct.Struct(">4sIQ")
_ACK = struct.Struct(">QQ")


def now_cycle():
    """Return the current clock cycle (rising edges since time 0)."""
    return int(get_sim_time("ps")) // CLK_PERIOD_PS


async def wait_cycles(clk, n):
    """Wait ``n`` >= 1 rising edges of ``clk`` from a rising edge, with one timer."""
    if n > 2:
        await Timer(n * CLK_PERIOD_PS - CLK_PERIOD_PS // 2, unit="ps")
        await RisingEdge(clk)
    elif n > 0:
        await ClockCycles(clk, n)


class ClickPlayer:
    """Receive stretches on ``conn`` (a connected socket) and play them onto the pins."""

    def __init__(self, dut):
        self.dut = dut
        self.pins = {f"det{ch}": getattr(dut, f"bob__det__{ch}") for ch in range(4)}
        self.pins["sync"] = dut.bob__sync
        for pin in self.pins.values():
            pin.value = 0
        self.conn = None
        self.rx = b""
        self.queue = deque()
        self.played = 0
        self.next_free = 0          # first cycle the next stretch may use
        self.busy = False
        self.reported = 0
        cocotb.start_soon(self._run())

    def feed(self, data):
        """Take bytes from the clicks socket; queue every whole stretch."""
        import numpy as np
        self.rx += data
        while len(self.rx) >= _STRETCH.size:
            magic, n, gap = _STRETCH.unpack_from(self.rx)
            if magic != b"STR1":
                raise RuntimeError(f"clicks socket: bad stretch header {self.rx[:16].hex()}")
            size = _STRETCH.size + 9 * n
            if len(self.rx) < size:
                return
            body = self.rx[_STRETCH.size:size]
            self.rx = self.rx[size:]
            times = np.frombuffer(body[:8 * n], dtype=">i8").astype(np.int64)
            inputs = np.frombuffer(body[8 * n:], dtype=np.uint8)
            self.queue.append((times, inputs, gap))

    def pending(self):
        """Return True while stretches are queued or playing."""
        return self.busy or bool(self.queue)

    async def _run(self):
        from hil.bfm.detector import schedule
        clk = self.dut.clk
        while True:
            if not self.queue:
                self.busy = False
                await Timer(IDLE_CYCLES * CLK_PERIOD_PS, unit="ps")
                continue
            self.busy = True
            times, inputs, gap = self.queue.popleft()
            await RisingEdge(clk)
            now = now_cycle()
            if times.size:
                base = int(times.min()) // SAMPLES * SAMPLES
                start = max(now + LEAD_CYCLES, self.next_free)
                names = [f"det{ch}" for ch in range(4)] + ["sync"]
                changes = schedule({names[k]: times[inputs == k] - base for k in range(5)},
                                   SAMPLES)
                for clock, vectors in changes:
                    target = start + clock
                    await wait_cycles(clk, target - now_cycle())
                    for name, vector in vectors.items():
                        self.pins[name].value = vector
                end = start + (changes[-1][0] if changes else 0) + 1
            else:
                end = now
            gap_cycles = -(-int(gap) // SAMPLES)
            self.next_free = end + gap_cycles
            await wait_cycles(clk, max(1, self.next_free - now_cycle()))
            self.played += 1
            self.report()

    def report(self):
        """Tell the host the stretches played and the clock cycle reached."""
        self.reported = now_cycle()
        if self.conn is not None:
            try:
                self.conn.sendall(_ACK.pack(self.played, self.reported))
            except OSError:
                self.conn = None


@cocotb.test()
async def serve(dut):
    """Serve the gateware's UART on a TCP port until the process is stopped."""
    # The clock in C (GPI): no Python per clock edge.
    cocotb.start_soon(Clock(dut.clk, CLK_PERIOD_PS, unit="ps",
                             impl=os.environ.get("TWIN_CLOCK_IMPL", "gpi")).start())
    source = UARTSource(dut.rx, dut.clk, DIVISOR)
    sink = UARTSink(dut.tx, dut.clk, DIVISOR)
    player = ClickPlayer(dut) if CLICKS else None
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    listener = socket.create_server(("127.0.0.1", int(os.environ.get("TWIN_PORT", "0"))))
    port = listener.getsockname()[1]
    ports = str(port)
    click_listener = None
    if player is not None:
        click_listener = socket.create_server(("127.0.0.1", 0))
        ports += f" {click_listener.getsockname()[1]}"
    port_file = os.environ.get("TWIN_PORT_FILE")
    if port_file:
        with open(port_file + ".tmp", "w") as f:
            f.write(ports)
        os.replace(port_file + ".tmp", port_file)
    dut._log.info("RTL twin serving on 127.0.0.1:%s", ports)

    client = None
    idle_steps = 0
    while True:
        readable = [listener] + ([client] if client else [])
        if click_listener is not None:
            readable.append(click_listener)
            if player.conn is not None:
                readable.append(player.conn)
        # Block (in wall time) only when nothing is happening in the simulation either.
        busy = player is not None and (player.pending() or (FREE_RUN and player.conn is not None))
        timeout = 0.05 if idle_steps > 64 and sink.empty() and not busy else 0
        ready, _, _ = select.select(readable, [], [], timeout)
        if listener in ready:
            if client:
                client.close()  # a new connection replaces the old, as with a serial port
            client, _ = listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if click_listener is not None and click_listener in ready:
            if player.conn is not None:
                player.conn.close()
            player.conn, _ = click_listener.accept()
            player.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            player.rx = b""
        if player is not None and player.conn is not None and player.conn in ready:
            try:
                light = player.conn.recv(1 << 20)
            except ConnectionError:
                light = b""
            if light:
                player.feed(light)
                idle_steps = 0
            else:
                player.conn.close()
                player.conn = None
        data = b""
        if client and client in ready:
            try:
                data = client.recv(65536)
            except ConnectionError:
                data = b""
            if not data:
                client.close()
                client = None
        if data:
            idle_steps = 0
            await source.send(data)
        else:
            idle_steps += 1
            await Timer(IDLE_CYCLES * CLK_PERIOD_PS, unit="ps")
        if player is not None and player.conn is not None \
                and now_cycle() - player.reported >= REPORT_CYCLES:
            player.report()
        if not sink.empty():
            out = bytes(sink.queue)
            sink.queue.clear()
            idle_steps = 0
            if client:
                try:
                    client.sendall(out)
                except ConnectionError:
                    client.close()
                    client = None
