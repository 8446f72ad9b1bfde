"""Top-level gateware: the node's cores wired to the register map, for simulation and boards.

``NodeCore`` is everything behind the UART as byte streams (what the Amaranth-simulator tests
drive); ``NodeTop`` adds the UART on two pins (what cocotb on Verilator and the boards use).
"""

import subprocess
from pathlib import Path

from amaranth import *
from amaranth.lib import wiring, stream, fifo
from amaranth.lib.wiring import In, Out

from .spec.protocol import StreamChannel
from .spec.registers import REGISTER_MAP, Role, Access, role_register_map
from .cores.csr import RegisterBank
from .cores.link import Link, LINK_COUNTERS
from .cores.uart import UARTRx, UARTTx, divisor_for
from .cores.modulator import Modulator, AlicePins
from dataclasses import replace

from .cores.tagger import Tagger, TaggerParams, COUNTER_REGISTERS, COUNTERS_PORT
from .cores.tagger_records import RecordSerializer
from .spec.tagger import TAGGER_BLOCK, CHANNELS

__all__ = ["NodeCore", "NodeTop", "git_version", "ROLE_CHANNELS", "ROLE_PINS", "bob_pins",
           "role_pins"]


def git_version(repo=Path(__file__).resolve().parent.parent):
    """Return ``(hash32, dirty)`` of the work tree the gateware is built from, or ``(0, False)``."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=8", "HEAD"], cwd=repo, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                               check=True, capture_output=True, text=True).stdout.strip() != ""
        return int(rev, 16), dirty
    except (OSError, subprocess.CalledProcessError, ValueError):
        return 0, False


#: Stream channels each role's link serves: (host-to-device, device-to-host).
ROLE_CHANNELS = {
    Role.LINK: ((StreamChannel.LOOPBACK,), (StreamChannel.LOOPBACK,)),
    Role.BOB: ((StreamChannel.LOOPBACK,), (StreamChannel.LOOPBACK, StreamChannel.EVENTS)),
    Role.ALICE: ((StreamChannel.LOOPBACK, StreamChannel.CHOICES),
                 (StreamChannel.LOOPBACK, StreamChannel.REPORTS)),
}

def bob_pins(samples=1):
    """Return Bob's input signature: ``det[ch]`` and ``sync`` as ``samples``-bit sample vectors
    (bit 0 earliest; from ``gateware.cores.sampler.Sampler`` on a board, from the cocotb
    detector model in simulation)."""
    return wiring.Signature({"det": In(samples).array(CHANNELS), "sync": In(samples)})


#: Signature members each role's core brings out beyond the host link (its quantum-side pins).
ROLE_PINS = {
    Role.LINK: {},
    Role.ALICE: {"alice": Out(AlicePins)},
    Role.BOB: {},   # sized by the sampling rate: role_pins(Role.BOB, samples) / bob_pins(samples)
}


def role_pins(role, samples=1):
    """Return the signature members of ``role``'s quantum-side pins (``ROLE_PINS``, with Bob's
    sized for ``samples`` samples per clock)."""
    if role == Role.BOB:
        return {"bob": Out(bob_pins(samples))}
    return dict(ROLE_PINS[role])


class NodeCore(wiring.Component):
    """The link, the register bank and the role's cores, with the host link as byte streams.

    ``clk_hz`` is reported in ``core.clk_hz``; ``git_hash``/``dirty`` in ``core.git_hash`` and
    ``core.platform``. ``loopback_depth`` is the LOOPBACK stream FIFO's size in bytes.
    ``choices_depth`` is ALICE's choice FIFO size in bytes. The role's pins (``ROLE_PINS``)
    join the signature. ``tagger`` (a ``TaggerParams``, the board's) sizes BOB's tagger: its
    histograms, event FIFO, item queue; by default the counters live in block RAM behind one
    bank read port (``gateware.cores.tagger_counters``) rather than in 23 x 32 flip-flops.
    ``events_words`` and ``counter_memory``, if given, override those two of ``tagger``.
    """

    def __init__(self, *, role=Role.LINK, clk_hz=48_000_000, git_hash=0, dirty=False,
                 loopback_depth=512, flush_cycles=256, choices_depth=4096, samples=1,
                 tagger=None, events_words=None, counter_memory=None):
        tagger = tagger or TaggerParams()
        if events_words is not None:
            tagger = replace(tagger, fifo_words=events_words)
        if counter_memory is not None:
            tagger = replace(tagger, counter_memory=counter_memory)
        self.tagger = tagger
        self.role = role
        self.counter_memory = tagger.counter_memory
        self.samples = samples
        self.events_words = tagger.fifo_words
        self.choices_depth = choices_depth
        self.h2d, self.d2h = ROLE_CHANNELS[role]
        self.clk_hz = clk_hz
        self.git_hash = git_hash
        self.dirty = dirty
        self.loopback_depth = loopback_depth
        self.flush_cycles = flush_cycles
        super().__init__({
            "i_rx": In(stream.Signature(8)),
            "o_tx": Out(stream.Signature(8)),
            "uart_error": In(1),
            "led": Out(1),
            **role_pins(role, samples),
        })

    def elaborate(self, platform):
        m = Module()
        read_ports = None
        if self.role == Role.BOB and self.counter_memory:
            read_ports = {f"{TAGGER_BLOCK.name}.{COUNTERS_PORT}":
                          tuple(f"{TAGGER_BLOCK.name}.{reg.name}" for reg in COUNTER_REGISTERS)}
        m.submodules.bank = bank = RegisterBank(role_register_map(self.role),
                                                read_ports=read_ports)
        m.submodules.link = link = Link(h2d=self.h2d, d2h=self.d2h, flush_cycles=self.flush_cycles)
        wiring.connect(m, link.bus, bank.bus)
        wiring.connect(m, wiring.flipped(self.i_rx), link.i_rx)
        wiring.connect(m, link.o_tx, wiring.flipped(self.o_tx))
        m.d.comb += link.uart_error.eq(self.uart_error)

        control = bank.reg("core.control")
        command = bank.reg("core.command")

        # Identity and build information.
        platform_reg = bank.reg("core.platform")
        m.d.comb += [
            bank.reg("core.git_hash").eq(self.git_hash),
            platform_reg.role.eq(self.role),
            platform_reg.channels.eq(len(set(self.h2d) | set(self.d2h))),
            platform_reg.dirty.eq(int(self.dirty)),
            bank.reg("core.clk_hz").eq(self.clk_hz),
        ]
        cycles = bank.reg("core.cycles")
        m.d.sync += cycles.eq(cycles + 1)
        m.d.comb += self.led.eq(control.led)

        # Link counters.
        m.d.comb += link.clear_counters.eq(command.clear_counters)
        for name in LINK_COUNTERS:
            m.d.comb += bank.reg(f"link.{name}").eq(getattr(link, name))

        # LOOPBACK: host-to-device bytes go back out as device-to-host frames.
        m.submodules.loopback = lb = fifo.SyncFIFOBuffered(width=8, depth=self.loopback_depth)
        free = Signal(16, init=self.loopback_depth)
        # Registered: the link compares it with a frame's length on its decision path; a value
        # one cycle old is safe (only the link fills this FIFO, and never within a cycle of a check).
        m.d.sync += free.eq(self.loopback_depth - lb.level)
        m.d.comb += [
            lb.w_data.eq(link.h2d_loopback.payload),
            lb.w_en.eq(link.h2d_loopback.valid),
            link.h2d_loopback.ready.eq(lb.w_rdy),
            link.h2d_loopback_free.eq(free),
            link.h2d_loopback_enable.eq(control.loopback),
            link.d2h_loopback.payload.eq(lb.r_data),
            link.d2h_loopback.valid.eq(lb.r_rdy),
            lb.r_en.eq(link.d2h_loopback.ready),
            link.d2h_loopback_level.eq(lb.level),
            bank.reg("core.status").loopback_free.eq(free),
        ]

        if self.role == Role.ALICE:
            self._elaborate_alice(m, bank, link)
        if self.role == Role.BOB:
            self._elaborate_bob(m, bank, link)
        return m

    def _elaborate_bob(self, m, bank, link):
        """Wire the tagger to its registers (by their spec names), its pins and EVENTS."""
        m.submodules.tagger = tagger = Tagger(self.samples, **self.tagger.tagger_args())
        if self.counter_memory:
            addr, data = bank.mem(f"{TAGGER_BLOCK.name}.{COUNTERS_PORT}")
            m.d.comb += [getattr(tagger, f"{COUNTERS_PORT}__addr").eq(addr),
                         data.eq(getattr(tagger, f"{COUNTERS_PORT}__data"))]
        for reg in TAGGER_BLOCK.registers:
            if self.counter_memory and reg in COUNTER_REGISTERS:
                continue
            path = f"{TAGGER_BLOCK.name}.{reg.name}"
            if reg.memory:
                addr, data = bank.mem(path)
                m.d.comb += [getattr(tagger, f"{reg.name}__addr").eq(addr),
                             data.eq(getattr(tagger, f"{reg.name}__data"))]
                continue
            ports = getattr(tagger, reg.name)
            for i in range(reg.count):
                port = ports[i] if reg.count > 1 else ports
                bank_port = bank.reg(path, i if reg.count > 1 else None)
                m.d.comb += (bank_port.eq(port) if reg.access is Access.RO else port.eq(bank_port))
        for ch in range(CHANNELS):
            m.d.comb += tagger.det[ch].eq(self.bob.det[ch])
        m.d.comb += tagger.sync.eq(self.bob.sync)
        # EVENTS: records go out big-endian through the serialiser.
        m.submodules.events = ser = RecordSerializer()
        wiring.connect(m, tagger.o_records, ser.i_stream)
        wiring.connect(m, ser.o_stream, link.d2h_events)
        m.d.comb += [ser.i_words.eq(tagger.o_words), link.d2h_events_level.eq(ser.o_level)]

    def _elaborate_alice(self, m, bank, link):
        """Wire the modulator to its registers (by their spec names), streams and pins."""
        m.submodules.modulator = mod = Modulator(choices_depth=self.choices_depth)
        for info in REGISTER_MAP:
            if info.block.name != "modulator":
                continue
            port, reg = getattr(mod, info.name), bank.reg(info.path)
            m.d.comb += (reg.eq(port) if info.access is Access.RO else port.eq(reg))
        wiring.connect(m, link.h2d_choices, mod.i_choices)
        wiring.connect(m, mod.o_reports, link.d2h_reports)
        m.d.comb += [
            link.h2d_choices_free.eq(mod.choices_free),
            link.h2d_choices_enable.eq(1),
            link.d2h_reports_level.eq(mod.reports_level),
        ]
        wiring.connect(m, mod.pins, wiring.flipped(self.alice))


class NodeTop(wiring.Component):
    """``NodeCore`` behind an 8N1 UART on pins ``rx`` (from the host) and ``tx`` (to the host),
    with the role's pins (``ROLE_PINS``) passed through."""

    def __init__(self, *, clk_hz=48_000_000, baud=12_000_000, **core_args):
        self.clk_hz = clk_hz
        self.baud = baud
        self.divisor = divisor_for(clk_hz, baud)
        self._core_args = core_args
        self.role = core_args.get("role", Role.LINK)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "led": Out(1),
            **role_pins(self.role, core_args.get("samples", 1)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = NodeCore(clk_hz=self.clk_hz, **self._core_args)
        m.submodules.uart_rx = urx = UARTRx(self.divisor)
        m.submodules.uart_tx = utx = UARTTx(self.divisor)
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            self.led.eq(core.led),
            core.uart_error.eq(urx.overrun | urx.frame_error),
        ]
        wiring.connect(m, urx.o_stream, core.i_rx)
        wiring.connect(m, core.o_tx, utx.i_stream)
        for name in role_pins(self.role, self._core_args.get("samples", 1)):
            wiring.connect(m, getattr(core, name), wiring.flipped(getattr(self, name)))
        return m
