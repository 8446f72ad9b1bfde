"""The RTL twin: our own gateware in Verilator under cocotb, its UART bridged to a TCP socket.

``Twin(role=...)`` builds (or reuses) the Verilator model of ``gateware.top.NodeTop`` (inside
``twin_top``: a simulation-only UART bridge on its pins, so cocotb moves 32 bytes per wake-up)
and runs it in a subprocess; the controller reaches it as ``socket://127.0.0.1:PORT`` exactly as
it reaches a board on a serial port. ``python -m hil.twin --role link --port 4000`` serves one
until stopped.

Alice's twin (``Twin(Role.ALICE, slots=True)``) publishes on a second loopback socket every slot
her pins played, read by a slot monitor in ``twin_top`` (``TwinSlots``; ``hil.fibre`` turns them
into light), and takes slot budgets that bound how far her run plays ahead of the host.

Bob's twin (``Twin(Role.BOB, clicks=True)``) also listens on a second loopback socket for the
light: ``twin.clicks`` (a ``TwinClicks``) sends it stretches of click and sync times in bins
(``hil.fibre.Stretch``), which the simulation drives onto the detector and sync pins with the
detector BFM, waiting between changes with one timer each (no Python per idle clock). Wire
format, host to twin, per stretch: ``>4sIQ`` (b"STR1", event count n, gap in bins), then n
int64 bins (big-endian) and n input bytes (0-3 detector channel, 4 sync). Twin to host, once a
stretch and its gap have been played, and every 20 000 clock cycles: ``>QQ`` (stretches played,
clock cycle reached). ``free_run``: keep simulating while the clicks socket is connected, so a
realtime testbed can clock Alice from the twin's time (``TwinClicks.seconds``).
"""

import argparse
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gateware.spec.registers import Role

__all__ = ["Twin", "TwinClicks", "TwinSlots", "build_twin", "twin_top", "unpack_records",
           "MONITOR_SLOTS"]

HERE = Path(__file__).resolve().parent
CLK_HZ = 48_000_000
BAUD = 12_000_000


#: Bob's samples per clock in the twin (as on iCE40 DDR inputs, and the behavioural model's).
BOB_SAMPLES = 2
#: Input numbers on the clicks socket.
SYNC_INPUT = 4
_STRETCH = struct.Struct(">4sIQ")
_ACK = struct.Struct(">QQ")


#: Slots per record word of Alice's slot monitor (one Python wake-up per word).
MONITOR_SLOTS = 64
#: Bits per slot record: state (2), intensity (2), laser fired (1), sync fired (1).
MONITOR_RECORD_BITS = 6
_SLOTS_MSG = struct.Struct(">4sQQHB")     # b"SLT1", first slot, first cycle, count, flags
_BUDGET_MSG = struct.Struct(">4sQ")       # b"BGT1", slot budget
#: Flags of a slots message.
SLOTS_ENDED, SLOTS_RUNNING, SLOTS_STATUS = 1, 2, 4


def unpack_records(records):
    """Return ``(state, intensity, laser, sync)`` uint8 arrays of slot monitor records (the
    layout ``twin_top`` packs: state bits 1:0, intensity 3:2, laser 4, sync 5)."""
    import numpy as np
    r = np.asarray(records, dtype=np.uint8)
    return r & 3, (r >> 2) & 3, (r >> 4) & 1, (r >> 5) & 1


#: Bytes per word of the simulation-only UART bridge, each way (one Python wake-up per word).
BRIDGE_BYTES = 32


def twin_top(role=Role.LINK, samples=BOB_SAMPLES, clk_hz=CLK_HZ, baud=BAUD, **core_args):
    """Return the twin's top (``TwinTop``): ``NodeTop`` of ``role``, unchanged, with a
    simulation-only UART bridge on its ``rx``/``tx`` pins and, for Alice, a slot monitor."""
    from amaranth import Cat, Module, Signal
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from gateware.cores.uart import UARTRx, UARTTx
    from gateware.top import NodeTop, role_pins

    extra = {"samples": samples} if role == Role.BOB else {}
    pins = role_pins(role, samples)

    class TwinTop(wiring.Component):
        """``NodeTop`` unchanged, driven through its UART pins by a bridge in the simulation.

        **UART bridge.** The host side of the serial line is a UART transmitter and receiver in
        the simulated design (the gateware's own ``UARTTx``/``UARTRx`` at the same divisor), so
        the node's real UART decodes real 8N1 frames on its ``rx`` pin and sends them on ``tx``,
        while the cocotb side moves ``BRIDGE_BYTES`` bytes per wake-up: it writes a word of
        bytes (``h2d_data``, ``h2d_count``) and bumps ``h2d_seq``; the bridge takes it when the
        previous one is out (``h2d_ack`` follows ``h2d_seq``). Bytes from ``tx`` are packed into
        ``d2h_data``/``d2h_count``, published (``d2h_seq`` bumps) when the word is full or the
        line has been quiet for a little over a byte time. ``bridge_busy``: bytes are in flight.

        **Slot monitor** (Alice). Watches the modulator's ``slot_start`` strobe and
        ``status.running`` and the pins: per slot it records the state and intensity pins (held
        for the slot) and whether a laser or sync pulse came out during it. Records are packed
        ``MONITOR_SLOTS`` to a word, published (``mon_seq`` bumps) when full or when the run
        ends, with the word's first slot number (counted since reset), the clock cycle its
        first slot started and its record count.

        Simulation only: a board image is ``NodeTop`` itself.
        """

        def __init__(self):
            self.top = NodeTop(clk_hz=clk_hz, baud=baud, role=role, **extra, **core_args)
            self.divisor = self.top.divisor
            members = {
                "led": Out(1), **pins,
                "h2d_data": In(8 * BRIDGE_BYTES), "h2d_count": In(8), "h2d_seq": In(16),
                "h2d_ack": Out(16), "d2h_data": Out(8 * BRIDGE_BYTES), "d2h_count": Out(8),
                "d2h_seq": Out(16), "bridge_busy": Out(1),
            }
            if role == Role.ALICE:
                members.update({
                    "mon_seq": Out(16), "mon_data": Out(MONITOR_SLOTS * MONITOR_RECORD_BITS),
                    "mon_count": Out(8), "mon_first": Out(48), "mon_cycle": Out(48),
                    "mon_ended": Out(1), "mon_running": Out(1)})
            super().__init__(members)

        def elaborate(self, platform):
            m = Module()
            m.submodules.top = top = self.top
            m.d.comb += self.led.eq(top.led)
            for name in pins:
                wiring.connect(m, getattr(top, name), wiring.flipped(getattr(self, name)))
            self._bridge(m)
            if role == Role.ALICE:
                self._monitor(m)
            return m

        def _bridge(self, m):
            top, divisor = self.top, self.divisor
            m.submodules.host_tx = htx = UARTTx(divisor)
            m.submodules.host_rx = hrx = UARTRx(divisor)
            m.d.comb += [top.rx.eq(htx.tx), hrx.rx.eq(top.tx)]
            # host to device: one word at a time into the transmitter
            buf = Signal(8 * BRIDGE_BYTES)
            count, index = Signal(8), Signal(8)
            has = Signal()
            m.d.comb += [has.eq(index < count), htx.i_stream.valid.eq(has),
                         htx.i_stream.payload.eq(buf.word_select(index, 8))]
            with m.If(htx.i_stream.valid & htx.i_stream.ready):
                m.d.sync += index.eq(index + 1)
            with m.Elif(~has & (self.h2d_seq != self.h2d_ack)):
                m.d.sync += [buf.eq(self.h2d_data), count.eq(self.h2d_count), index.eq(0),
                             self.h2d_ack.eq(self.h2d_seq)]
            # device to host: bytes packed into words
            obuf = Signal(8 * BRIDGE_BYTES)
            ocount = Signal(8)
            quiet = Signal(16)
            m.d.comb += hrx.o_stream.ready.eq(1)
            with m.If(hrx.o_stream.valid):
                m.d.sync += [obuf.word_select(ocount, 8).eq(hrx.o_stream.payload),
                             ocount.eq(ocount + 1), quiet.eq(0)]
            with m.Elif((ocount == BRIDGE_BYTES) | ((ocount != 0) & (quiet >= 12 * divisor))):
                m.d.sync += [self.d2h_data.eq(obuf), self.d2h_count.eq(ocount),
                             self.d2h_seq.eq(self.d2h_seq + 1), ocount.eq(0), quiet.eq(0)]
            with m.Elif(ocount != 0):
                m.d.sync += quiet.eq(quiet + 1)
            m.d.comb += self.bridge_busy.eq(has | (self.h2d_seq != self.h2d_ack)
                                            | ~htx.i_stream.ready | (ocount != 0))

        def _monitor(self, m):
            top = self.top
            # NodeTop's core is elaborated here once so that the monitor sees the modulator's
            # slot strobe; Amaranth then takes that module for the core (no second copy).
            top_m = top.elaborate(None)
            core = top_m.submodules.core
            core_m = core.elaborate(None)
            core.elaborate = lambda platform: core_m
            top.elaborate = lambda platform: top_m
            mod = core_m.submodules.modulator
            pins_, running, start = top.alice, mod.status.running, mod.slot_start
            cycle = Signal(48)
            m.d.sync += cycle.eq(cycle + 1)
            first_cycle = Signal()          # the first cycle of a slot: its pins are valid
            is_open = Signal()              # a slot is being recorded
            slot_cycle = Signal(48)         # cycle at which the open slot started
            state, intensity = Signal(2), Signal(2)
            laser, sync = Signal(), Signal()
            m.d.sync += first_cycle.eq(start)
            with m.If(start):
                m.d.sync += [is_open.eq(1), slot_cycle.eq(cycle)]
            with m.If(first_cycle):
                m.d.sync += [state.eq(pins_.state), intensity.eq(pins_.intensity.as_value()),
                             laser.eq(pins_.laser), sync.eq(pins_.sync)]
            with m.Else():
                m.d.sync += [laser.eq(laser | pins_.laser), sync.eq(sync | pins_.sync)]

            buf = Signal(MONITOR_SLOTS * MONITOR_RECORD_BITS)
            count = Signal(range(MONITOR_SLOTS + 1))
            closed = Signal(48)             # slots closed since reset
            word_first, word_cycle = Signal(48), Signal(48)
            emit, emit_ended = Signal(), Signal()
            close = Signal()
            m.d.comb += close.eq(is_open & (start | ~running))
            m.d.sync += emit.eq(0)
            with m.If(close):
                record = Cat(state, intensity, laser | pins_.laser, sync | pins_.sync)
                m.d.sync += [buf.word_select(count, MONITOR_RECORD_BITS).eq(record),
                             count.eq(count + 1), closed.eq(closed + 1)]
                with m.If(count == 0):
                    m.d.sync += [word_first.eq(closed), word_cycle.eq(slot_cycle)]
                with m.If(~running):
                    m.d.sync += is_open.eq(0)
                with m.If((count + 1 == MONITOR_SLOTS) | ~running):
                    m.d.sync += [emit.eq(1), emit_ended.eq(~running)]
            with m.If(emit):
                m.d.sync += [self.mon_data.eq(buf), self.mon_count.eq(count),
                             self.mon_first.eq(word_first), self.mon_cycle.eq(word_cycle),
                             self.mon_ended.eq(emit_ended), self.mon_seq.eq(self.mon_seq + 1),
                             count.eq(0)]
            m.d.comb += self.mon_running.eq(running)

    return TwinTop()


def build_twin(role=Role.LINK, samples=BOB_SAMPLES):
    """Build (or reuse from the cache) the Verilator model of the ``role`` image; return
    ``(top_name, build_dir, divisor)``. ``samples``: Bob's samples per clock (BOB only).
    The top is ``twin_top``: the image's ``NodeTop`` with the UART bridge (and Alice's slot
    monitor)."""
    from gateware import rtlsim
    top = twin_top(role, samples, git_hash=0)
    name = f"twin_{role.name.lower()}" + (f"_s{samples}" if role == Role.BOB else "")
    return name, rtlsim.build(name, rtlsim.verilog(top, name)), top.divisor


def _serve(role, port, port_file, samples=BOB_SAMPLES, clicks=False, free_run=False,
           slots=False):
    from gateware import rtlsim
    name, build_dir, divisor = build_twin(role, samples)
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    rtlsim.run(name, build_dir, HERE / "twin_cocotb.py", test_dir=run_dir, seed=1,
               extra_env={"UART_DIVISOR": str(divisor), "TWIN_PORT": str(port),
                          "TWIN_PORT_FILE": str(port_file or ""),
                          "TWIN_CLICKS": "1" if clicks else "", "TWIN_SAMPLES": str(samples),
                          "TWIN_SLOTS": "1" if slots else "",
                          # the clock runs in C (no Python per edge); cocotb supports that
                          # only with writes applied as the simulator applies them
                          "COCOTB_TRUST_INERTIAL_WRITES": "1",
                          "TWIN_FREE_RUN": "1" if free_run else "",
                          "TWIN_CLK_PERIOD_PS": str(2 * round(0.5e12 / CLK_HZ))})


class TwinClicks:
    """The host end of a Bob twin's clicks socket: ``deliver(stretch)`` sends one
    (``hil.fibre.Stretch``), ``wait()`` blocks until the twin has played every stretch sent.

    ``gap_bins``: idle bins the twin leaves between stretches, more than a frame, so each
    stretch is one tagger run as on the behavioural model (``hil.fibre``).
    """

    def __init__(self, port, *, gap_bins, timeout=600.0):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.gap_bins = int(gap_bins)
        self.timeout = timeout
        self.sent = 0
        self.played = 0
        self.clock = 0
        self._rx = b""
        self._lock = threading.Lock()     # Alice's clock reads it from her board's thread

    def deliver(self, stretch):
        """Send one stretch of clicks (per channel) and syncs, times in bins."""
        import numpy as np
        times = [np.asarray(c, dtype=np.int64) for c in stretch.clicks]
        inputs = [np.full(t.size, ch, np.uint8) for ch, t in enumerate(times)]
        times.append(np.asarray(stretch.syncs, dtype=np.int64))
        inputs.append(np.full(times[-1].size, SYNC_INPUT, np.uint8))
        t, i = np.concatenate(times), np.concatenate(inputs)
        self.sock.sendall(_STRETCH.pack(b"STR1", t.size, self.gap_bins)
                          + t.astype(">i8").tobytes() + i.tobytes())
        self.sent += 1

    def _read_acks(self, timeout):
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return
        with self._lock:
            try:
                data = self.sock.recv(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            if not data:
                raise RuntimeError("the RTL twin closed its clicks socket (did the simulation "
                                   "end?)")
            self._rx += data
            while len(self._rx) >= _ACK.size:
                self.played, self.clock = _ACK.unpack_from(self._rx)
                self._rx = self._rx[_ACK.size:]

    def check(self):
        """Collect any acknowledgements without waiting."""
        self._read_acks(0)

    def seconds(self, clk_hz=CLK_HZ):
        """Return the twin's simulated time, in seconds, as last reported."""
        self.check()
        return self.clock / clk_hz

    def wait(self):
        """Block until the twin has played every stretch sent (gap included)."""
        deadline = time.monotonic() + self.timeout
        while self.played < self.sent:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the RTL twin played {self.played} of {self.sent} stretches "
                                   f"within {self.timeout} s")
            self._read_acks(0.05)

    def close(self):
        """Close the socket."""
        self.sock.close()


class TwinSlots:
    """The host end of an Alice twin's slots socket: the slots her pins played, and her budget.

    Alice's twin publishes every slot her modulator plays, as the pins showed it (a record
    byte: state bits 1:0, intensity bits 3:2, laser fired bit 4, sync fired bit 5), in words of
    up to ``MONITOR_SLOTS`` slots. ``poll()`` reads what arrived and hands each word to every
    ``listeners`` callable as ``f(first_slot, records, first_cycle, ended)`` (slots numbered
    since the twin's reset; ``first_cycle`` the clock cycle the first one started; ``ended``:
    the run stopped after the last). ``grant(n)``: Alice may play up to slot ``n``; past it her
    simulated time stands still while the host is quiet (``hil/twin_cocotb.py``).
    """

    def __init__(self, port, *, timeout=600.0):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.listeners = []
        self.played = 0          # slots received
        self.running = False     # as last reported
        self.budget = 0
        self.words = 0
        self.statuses = 0        # status answers received (one per grant)
        self._grants = 0
        self._rx = b""
        self._lock = threading.Lock()

    def grant(self, budget):
        """Let Alice play up to slot ``budget`` (a budget never shrinks)."""
        budget = int(budget)
        if budget > self.budget:
            self.budget = budget
            self._grants += 1
            self.sock.sendall(_BUDGET_MSG.pack(b"BGT1", budget))

    def poll(self, timeout=0.0):
        """Read what arrived (waiting up to ``timeout`` s for the first bytes); hand every whole
        word to the listeners; return the number of slots received."""
        import numpy as np
        with self._lock:
            ready, _, _ = select.select([self.sock], [], [], timeout)
            got = 0
            while ready:
                try:
                    data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
                except BlockingIOError:
                    break
                if not data:
                    raise RuntimeError("the RTL twin closed its slots socket (did the "
                                       "simulation end?)")
                self._rx += data
                if len(data) < 1 << 20:
                    break
            rx, pos = self._rx, 0
            while len(rx) - pos >= _SLOTS_MSG.size:
                magic, first, cycle, count, flags = _SLOTS_MSG.unpack_from(rx, pos)
                if magic != b"SLT1":
                    raise RuntimeError(f"slots socket: bad message {rx[pos:pos + 16].hex()}")
                end = pos + _SLOTS_MSG.size + count
                if len(rx) < end:
                    break
                records = np.frombuffer(rx, np.uint8, count, pos + _SLOTS_MSG.size).copy()
                pos = end
                self.running = bool(flags & SLOTS_RUNNING)
                if flags & SLOTS_STATUS:
                    self.statuses += 1
                    continue
                if first != self.played:
                    raise RuntimeError(f"slots socket: slots {self.played}..{first} missing")
                self.played = first + count
                self.words += 1
                got += count
                for listener in self.listeners:
                    listener(first, records, cycle, bool(flags & SLOTS_ENDED))
            self._rx = rx[pos:]
            return got

    def wait_played(self, target, timeout=None):
        """Poll until Alice has played ``target`` slots, or her run is stopped (as answered to
        the last grant); return the slots played."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while self.played < target:
            self.poll(0.05)
            if self.statuses >= self._grants and not self.running:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the Alice twin played {self.played} of {target} slots "
                                   f"within {self.timeout} s")
        return self.played

    def close(self):
        """Close the socket."""
        self.sock.close()


class Twin:
    """A running RTL twin of role ``role`` on 127.0.0.1 (``port`` 0: a free one).

    Use as a context manager; ``url`` is the link URL. ``start_timeout`` covers the first
    Verilator build (about a minute on two cores), later starts reuse the cache. ``clicks``
    (Bob): ``twin.clicks`` is a ``TwinClicks``; ``slots`` (Alice): ``twin.slots`` is a
    ``TwinSlots``.
    """

    def __init__(self, role=Role.LINK, port=0, *, start_timeout=600.0, samples=BOB_SAMPLES,
                 clicks=False, gap_bins=None, free_run=False, slots=False):
        self.role = Role(role) if not isinstance(role, Role) else role
        self.port = port
        self.start_timeout = start_timeout
        self.samples = samples
        self.with_clicks = clicks
        self.gap_bins = gap_bins if gap_bins is not None else 1 << 18
        self.clicks = None
        self.free_run = free_run
        if slots and self.role != Role.ALICE:
            raise ValueError("slots=True: only Alice's twin plays slots")
        if clicks and self.role != Role.BOB:
            raise ValueError("clicks=True: only Bob's twin takes clicks")
        self.with_slots = slots
        self.slots = None
        self._proc = None

    @property
    def url(self):
        return f"socket://127.0.0.1:{self.port}"

    def start(self):
        """Start the simulation and wait until it listens; raise RuntimeError if it does not."""
        build_twin(self.role, self.samples)  # build here, so a build error surfaces here
        tmp = Path(tempfile.mkdtemp(prefix="twin_"))
        port_file = tmp / "port"
        self._log = open(tmp / "twin.log", "w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "hil.twin", "--role", self.role.name.lower(),
             "--port", str(self.port), "--port-file", str(port_file),
             "--samples", str(self.samples)] + (["--clicks"] if self.with_clicks else [])
            + (["--free-run"] if self.free_run else [])
            + (["--slots"] if self.with_slots else []),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(HERE.parent))
        deadline = time.monotonic() + self.start_timeout
        while not port_file.exists():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._log.seek(0)
                tail = self._log.read()[-3000:]
                self.stop()
                raise RuntimeError(f"the RTL twin ({self.role.name}) did not start; its log:\n{tail}")
            time.sleep(0.05)
        ports = port_file.read_text().split()
        self.port = int(ports[0])
        if self.with_clicks:
            self.clicks = TwinClicks(int(ports[1]), gap_bins=self.gap_bins)
        if self.with_slots:
            self.slots = TwinSlots(int(ports[1]))
        return self

    def stop(self):
        """Stop the simulation (the whole process group: runner and simulator)."""
        if self.clicks is not None:
            self.clicks.close()
            self.clicks = None
        if self.slots is not None:
            self.slots.close()
            self.slots = None
        if self._proc and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait()
        self._proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hil.twin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=[r.name.lower() for r in Role], default="link")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: a free one)")
    parser.add_argument("--port-file", help="write the port (and the clicks port) here once listening")
    parser.add_argument("--samples", type=int, default=BOB_SAMPLES, help="Bob's samples per clock")
    parser.add_argument("--clicks", action="store_true", help="Bob: take clicks on a second socket")
    parser.add_argument("--free-run", action="store_true",
                        help="keep simulating while a clicks client is connected")
    parser.add_argument("--slots", action="store_true",
                        help="Alice: publish her played slots on a second socket")
    args = parser.parse_args(argv)
    _serve(Role[args.role.upper()], args.port, args.port_file, args.samples, args.clicks,
           args.free_run, args.slots)


if __name__ == "__main__":
    main()
