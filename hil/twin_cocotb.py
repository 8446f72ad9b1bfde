"""cocotb side of the RTL twin (``hil.twin``): bridges a TCP socket on 127.0.0.1 to the UART pins
of the gateware top running in Verilator. Bytes from the TCP client go, a word of
``BRIDGE_BYTES`` at a time, to the twin top's UART bridge, which sends them as 8N1 frames on the
node's ``rx`` pin; the frames the node sends on ``tx`` come back in words to the client
(``hil.twin.twin_top``): one Python wake-up per word, none per bit or clock.

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
from cocotb.triggers import ClockCycles, RisingEdge, Timer, ValueChange
from cocotb.utils import get_sim_time


DIVISOR = int(os.environ.get("UART_DIVISOR", "4"))
CLK_PERIOD_PS = int(os.environ.get("TWIN_CLK_PERIOD_PS", "20834"))
SAMPLES = int(os.environ.get("TWIN_SAMPLES", "2"))
CLICKS = bool(os.environ.get("TWIN_CLICKS"))
#: Alice: publish the slots her pins play on a second socket (the image has the slot monitor).
SLOTS = bool(os.environ.get("TWIN_SLOTS"))
#: Keep simulating while a clicks client is connected (a realtime testbed clocks Alice from
#: the twin's time, reported every REPORT_CYCLES), instead of idling in wall time.
FREE_RUN = bool(os.environ.get("TWIN_FREE_RUN"))
REPORT_CYCLES = 20_000
#: Clock cycles simulated per idle step: 16 UART byte-times, so device-to-host data that the
#: gateware produces on its own (a stream flush) still reaches the client promptly.
IDLE_CYCLES = 16 * 10 * DIVISOR
#: Clock cycles between a stretch's arrival and its first pin change.
LEAD_CYCLES = 64
#: Idle steps after the last UART activity before a held Alice stops simulated time.
HOLD_GRACE_STEPS = 8
_STRETCH = struct.Struct(">4sIQ")
_ACK = struct.Struct(">QQ")
BRIDGE_BYTES = 32                         # as hil.twin
_SLOTS_MSG = struct.Struct(">4sQQHB")     # as hil.twin
_BUDGET_MSG = struct.Struct(">4sQ")
SLOTS_ENDED, SLOTS_RUNNING, SLOTS_STATUS = 1, 2, 4
MONITOR_RECORD_BITS = 6


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


class Bridge:
    """The host end of the twin top's UART bridge: ``send(data)`` hands bytes to it a word at a
    time; bytes the node sent collect in ``queue``."""

    def __init__(self, dut):
        self.dut = dut
        self.queue = bytearray()
        self.seq = 0
        dut.h2d_seq.value = 0
        dut.h2d_count.value = 0
        dut.h2d_data.value = 0
        cocotb.start_soon(self._receive())

    def empty(self):
        """Return whether no byte from the node is waiting."""
        return not self.queue

    def busy(self):
        """Return True while bytes are in flight either way inside the bridge."""
        return bool(int(self.dut.bridge_busy.value))

    async def send(self, data):
        """Hand ``data`` to the bridge; return once its last word has been written (the bridge
        sends it on its own, ``busy()`` until the line is idle)."""
        dut = self.dut
        for offset in range(0, len(data), BRIDGE_BYTES):
            chunk = data[offset:offset + BRIDGE_BYTES]
            while int(dut.h2d_ack.value) != self.seq:
                await ValueChange(dut.h2d_ack)
            dut.h2d_data.value = int.from_bytes(chunk, "little")
            dut.h2d_count.value = len(chunk)
            self.seq = (self.seq + 1) & 0xFFFF
            dut.h2d_seq.value = self.seq

    async def _receive(self):
        dut = self.dut
        while True:
            await ValueChange(dut.d2h_seq)
            count = int(dut.d2h_count.value)
            self.queue += dut.d2h_data.value.to_unsigned().to_bytes(BRIDGE_BYTES, "little")[:count]


class SlotMonitor:
    """Alice: read the slot monitor's words (one wake-up per word) and send them to the host on
    the slots socket; take slot budgets from it.

    Alice's time is held (not simulated) while a host is connected on the slots socket, her run
    has used its budget and the UART has been quiet for ``HOLD_GRACE_STEPS`` idle steps: the
    host decides how far she plays (``hil.twin.TwinSlots.grant``), and a run never outpaces the
    light's consumer.
    """

    def __init__(self, dut):
        self.dut = dut
        self.conn = None
        self.rx = b""
        self.budget = 0          # slots (since reset) Alice may play before she is held
        self.played = 0          # slots published so far
        self.words = 0
        cocotb.start_soon(self._run())

    def running(self):
        """Return True while the modulator runs."""
        return bool(int(self.dut.mon_running.value))

    def busy(self):
        """Return True while Alice runs within her budget (simulate without waiting)."""
        return self.conn is not None and self.played < self.budget and self.running()

    def holding(self):
        """Return True when simulated time should stand still while nothing else happens."""
        return self.conn is not None and not self.busy()

    def feed(self, data):
        """Take budget messages from the host; answer each with a status message."""
        self.rx += data
        while len(self.rx) >= _BUDGET_MSG.size:
            magic, budget = _BUDGET_MSG.unpack_from(self.rx)
            if magic != b"BGT1":
                raise RuntimeError(f"slots socket: bad budget message {self.rx[:12].hex()}")
            self.rx = self.rx[_BUDGET_MSG.size:]
            self.budget = max(self.budget, budget)
            flags = SLOTS_STATUS | (SLOTS_RUNNING if self.running() else 0)
            self._send(_SLOTS_MSG.pack(b"SLT1", self.played, 0, 0, flags))

    def _send(self, data):
        if self.conn is not None:
            try:
                self.conn.sendall(data)
            except OSError:
                self.conn = None

    async def _run(self):
        dut = self.dut
        while True:
            await ValueChange(dut.mon_seq)
            count = int(dut.mon_count.value)
            first = int(dut.mon_first.value)
            cycle = int(dut.mon_cycle.value)
            ended = int(dut.mon_ended.value)
            data = dut.mon_data.value.to_unsigned()
            records = bytes((data >> (MONITOR_RECORD_BITS * i)) & 0x3F for i in range(count))
            self.played = first + count
            self.words += 1
            flags = (SLOTS_ENDED if ended else 0) | (SLOTS_RUNNING if self.running() else 0)
            self._send(_SLOTS_MSG.pack(b"SLT1", first, cycle, count, flags) + records)


@cocotb.test()
async def serve(dut):
    """Serve the gateware's UART on a TCP port until the process is stopped."""
    # The clock in C (GPI): no Python per clock edge.
    cocotb.start_soon(Clock(dut.clk, CLK_PERIOD_PS, unit="ps",
                             impl=os.environ.get("TWIN_CLOCK_IMPL", "gpi")).start())
    bridge = Bridge(dut)
    player = ClickPlayer(dut) if CLICKS else None
    monitor = SlotMonitor(dut) if SLOTS else None
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0

    listener = socket.create_server(("127.0.0.1", int(os.environ.get("TWIN_PORT", "0"))))
    port = listener.getsockname()[1]
    ports = str(port)
    click_listener = None
    if player is not None or monitor is not None:
        # Bob: the light comes in; Alice: her played slots go out
        click_listener = socket.create_server(("127.0.0.1", 0))
        ports += f" {click_listener.getsockname()[1]}"
    side = player if player is not None else monitor
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
            if side.conn is not None:
                readable.append(side.conn)
        # Block (in wall time) only when nothing is happening in the simulation either.
        busy = (player is not None and (player.pending() or (FREE_RUN and player.conn is not None))) \
            or (monitor is not None and monitor.busy())
        quiet = idle_steps > 64 and bridge.empty()
        held = monitor is not None and idle_steps > HOLD_GRACE_STEPS and bridge.empty() \
            and monitor.holding() and not bridge.busy()
        timeout = 0.05 if (quiet and not busy) or held else 0
        ready, _, _ = select.select(readable, [], [], timeout)
        if listener in ready:
            if client:
                client.close()  # a new connection replaces the old, as with a serial port
            client, _ = listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if click_listener is not None and click_listener in ready:
            if side.conn is not None:
                side.conn.close()
            side.conn, _ = click_listener.accept()
            side.conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            side.rx = b""
        if side is not None and side.conn is not None and side.conn in ready:
            try:
                light = side.conn.recv(1 << 20)
            except ConnectionError:
                light = b""
            if light:
                side.feed(light)
                idle_steps = 0
            else:
                side.conn.close()
                side.conn = None
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
            await bridge.send(data)
        elif held and not ready:
            pass        # Alice held: her simulated time stands still until the host acts
        else:
            idle_steps += 1
            await Timer(IDLE_CYCLES * CLK_PERIOD_PS, unit="ps")
        if player is not None and player.conn is not None \
                and now_cycle() - player.reported >= REPORT_CYCLES:
            player.report()
        if not bridge.empty():
            out = bytes(bridge.queue)
            bridge.queue.clear()
            idle_steps = 0
            if client:
                try:
                    client.sendall(out)
                except ConnectionError:
                    client.close()
                    client = None
