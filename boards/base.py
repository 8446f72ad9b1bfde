"""What a board module declares, and the top that puts a role's gateware on its pins.

A board (``Board``) names its ``amaranth_boards`` platform, its clock plan (a PLL from the board
oscillator to the system clock, and for Bob's ECP5 sampler an edge clock at twice that), its
host UART rate, its tagger bin width, where each role's signals sit (``RolePins``: connector and
pin numbers) and how openFPGALoader programs it. ``BoardTop`` elaborates ``NodeTop`` for one role
on the board. Every number here is per board; nothing is shared by copy.
"""

from dataclasses import dataclass, field

from amaranth import *
from amaranth.build import Attrs, Pins, Resource
from amaranth.lib import io, wiring
from amaranth.lib.cdc import ResetSynchronizer

from gateware.spec.registers import Role
from gateware.top import NodeTop
from gateware.cores.tagger import TaggerParams
from gateware.cores.uart import divisor_for

__all__ = ["Board", "RolePins", "BoardTop", "ALICE_SIGNALS", "BOB_SIGNALS"]

#: Alice's output resources: name -> width (the order of pins in ``RolePins.alice``).
ALICE_SIGNALS = {"alice_state": 2, "alice_intensity": 2, "alice_laser": 1, "alice_sync": 1}
#: Bob's input resources: name -> width.
BOB_SIGNALS = {"bob_detector": 4, "bob_sync": 1}


@dataclass(frozen=True)
class RolePins:
    """Where a role's signals sit: ``connector`` (name, number) and pin numbers on it, in the
    order of ``ALICE_SIGNALS`` / ``BOB_SIGNALS`` (LSB first within a signal)."""
    connector: tuple
    pins: tuple

    def resources(self, signals, direction, attrs):
        """Return the Resources for ``signals`` on these pins."""
        out, at = [], 0
        for name, width in signals.items():
            pins = " ".join(str(p) for p in self.pins[at:at + width])
            at += width
            out.append(Resource(name, 0, Pins(pins, dir=direction, conn=self.connector), attrs))
        if at != len(self.pins):
            raise ValueError(f"{len(self.pins)} pins given for {at} signal bits")
        return out


@dataclass(frozen=True)
class Board:
    """One dev board: platform, clocks, UART, bin width, role pins, programmer.

    ``sys_hz`` is the system (tagger) clock in Hz; ``baud`` the host UART rate (bit/s);
    ``samples_per_clock`` how many samples the tagger takes per system clock (its bin is
    ``1 / (sys_hz * samples_per_clock)``); ``usb_uart`` names the USB-UART chip and its limit.
    ``clock`` is ``fn(m, platform, board)`` building domain ``sync`` (and ``eclk`` for Bob when
    ``samples_per_clock`` is 4). ``tagger`` sizes Bob's tagger on this board (histogram bins,
    event FIFO, item queue; ``gateware.cores.tagger.TaggerParams``), reported in ``tagger.info``.
    """
    name: str
    title: str
    platform: type
    sys_hz: int
    baud: int
    usb_uart: str
    samples_per_clock: int
    clock_plan: str
    clock: object
    io_attrs: dict
    alice: RolePins
    bob: RolePins
    loader_board: str
    build_kind: str = "bitstream"     # "bitstream" (YoWASP) or "verilog" (no vendor tools here)
    tagger: TaggerParams = TaggerParams()
    notes: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def bin_ps(self):
        """Return the tagger bin width, in picoseconds."""
        return 1e12 / (self.sys_hz * self.samples_per_clock)

    @property
    def divisor(self):
        """Return the UART bit period in system clock cycles (checked by ``divisor_for``)."""
        return divisor_for(self.sys_hz, self.baud)

    def make_platform(self):
        """Return the board's platform with the role resources added."""
        platform = self.platform()
        attrs = Attrs(**self.io_attrs)
        platform.add_resources(self.alice.resources(ALICE_SIGNALS, "o", attrs))
        platform.add_resources(self.bob.resources(BOB_SIGNALS, "i", attrs))
        return platform

    def summary(self):
        """Return the board's plan as plain data (for reports and ``docs/boards.md``)."""
        return {"board": self.name, "title": self.title, "device": self.platform.device,
                "sys_mhz": self.sys_hz / 1e6, "baud": self.baud, "usb_uart": self.usb_uart,
                "samples_per_clock": self.samples_per_clock, "bin_ps": round(self.bin_ps, 1),
                "clock_plan": self.clock_plan, "build": self.build_kind,
                "hist_bins": self.tagger.hist_bins, "events_words": self.tagger.fifo_words}


def reset_from_lock(m, locked, domain="sync"):
    """Hold ``domain`` in reset until the PLL reports ``locked``."""
    m.submodules[f"{domain}_rst"] = ResetSynchronizer(~locked, domain=domain)


class BoardTop(Elaboratable):
    """``NodeTop`` for ``role`` on ``board``: clock plan, UART, LED and the role's pins."""

    def __init__(self, board, role, **node_args):
        self.board = board
        self.role = Role[role.upper()] if isinstance(role, str) else Role(role)
        self.node_args = node_args

    def elaborate(self, platform):
        board = self.board
        m = Module()
        board.clock(m, platform, board)
        if self.role == Role.BOB:
            self.node_args.setdefault("samples", board.samples_per_clock)
            self.node_args.setdefault("tagger", board.tagger)
        m.submodules.node = node = NodeTop(clk_hz=board.sys_hz, baud=board.baud, role=self.role,
                                           **self.node_args)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += [node.rx.eq(rx.i), tx.o.eq(node.tx), led.o.eq(node.led)]
        if self.role == Role.ALICE:
            pins = node.alice
            for name, value in (("alice_state", pins.state), ("alice_intensity", pins.intensity),
                                ("alice_laser", pins.laser), ("alice_sync", pins.sync)):
                m.submodules[name] = buf = io.Buffer("o", platform.request(name, 0, dir="-"))
                m.d.comb += buf.o.eq(value)
        elif self.role == Role.BOB:
            self._connect_bob(m, platform, node)
        return m

    def _connect_bob(self, m, platform, node):
        """Bob's inputs through the tagger's ``Sampler`` (DDR on iCE40, IDDRX2F on ECP5)."""
        from gateware.cores.sampler import Sampler
        samples = self.node_args["samples"]
        det = platform.request("bob_detector", 0, dir="-")
        for ch in range(len(det)):
            m.submodules[f"det{ch}"] = s = Sampler(samples, port=det[ch])
            m.d.comb += node.bob.det[ch].eq(s.o_samples)
        m.submodules.sync_in = s = Sampler(samples, port=platform.request("bob_sync", 0, dir="-"))
        m.d.comb += node.bob.sync.eq(s.o_samples)
