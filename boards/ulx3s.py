"""ULX3S (ECP5 LFE5U-85F): 25 MHz oscillator, PLL to a 120 MHz edge clock, 60 MHz system clock,
FT231X UART at 3 Mbaud.

The FT231X on the ULX3S tops out at 3 Mbaud, so the link runs at 3 Mbaud (divisor 20 at 60 MHz).
60 MHz, not more: the link's request path reaches about 66-70 MHz on this part (docs/boards.md).

Clock plan (the usual ECP5 gearing plan, the same for every role): the PLL's CLKOP runs at
120 MHz and feeds an ``ECLKSYNCB`` (the edge clock ``eclk``); a ``CLKDIVF`` divides the edge
clock by 2 into the 60 MHz ``sync`` clock, so the ``IDDRX2F`` input gearing of Bob's tagger sees
a system clock in a fixed phase to its edge clock: 60 MHz x 4 samples gives 4.17 ns bins.
Until the PLL locks the edge clock is stopped and the divider held in reset; after lock a short
sequence clocked by the 25 MHz oscillator releases the divider, then restarts the edge clock
(Lattice's gearing start-up order), and only then lets ``sync`` out of reset.

Alice on GPIO header pairs 0-2. Bob on the true (+) pins of pairs 14-18: right-hand banks 2/3,
which have edge clocks and gearing, and only there the A pad of each pair takes ``IDDRX2F``
(nextpnr-ecp5 cannot route it on the - pins, "No wire found for port SLIP").
"""

from amaranth import *
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .base import Board, RolePins, reset_from_lock

__all__ = ["BOARD", "PLL", "REF_HZ", "ECLK_DIV", "SYNC_SEQUENCE"]

#: EHXPLLL settings: PFD = 25 MHz / CLKI_DIV = 5 MHz; VCO = PFD * CLKFB_DIV * CLKOP_DIV = 600 MHz
#: (400-800 allowed); CLKOP = VCO / CLKOP_DIV = 120 MHz, the edge clock (fed back to CLKFB).
PLL = {"CLKI_DIV": 5, "CLKFB_DIV": 24, "CLKOP_DIV": 5}
REF_HZ = 25_000_000
#: CLKDIVF divides the edge clock by this into ``sync`` (IDDRX2F is 4:1 gearing: 2 edges x 2).
ECLK_DIV = 2
#: Edge-clock alignment, in 25 MHz cycles after lock: (cycle, ECLKSYNCB STOP, CLKDIVF RST). Both
#: are held while the PLL is not locked; the divider leaves reset while the edge clock is stopped,
#: then the edge clock restarts; after the last step ``sync`` leaves reset.
SYNC_SEQUENCE = ((8, 1, 0), (16, 0, 0))


def clock(m, platform, board):
    """25 MHz G2 -> EHXPLLL 120 MHz -> ECLKSYNCB ``eclk`` -> CLKDIVF /2 -> 60 MHz ``sync``."""
    m.domains.sync = cd = ClockDomain("sync")
    m.domains.eclk = ecd = ClockDomain("eclk", reset_less=True)
    # The oscillator's own domain runs the alignment sequence (sync is stopped during it).
    m.domains.ref = ref = ClockDomain("ref", reset_less=True)
    m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
    locked, pll_eclk = Signal(name="locked"), Signal(name="pll_eclk")
    eclk, sync_clk = Signal(name="eclk"), Signal(name="sync_clk")
    m.d.comb += [ref.clk.eq(clk25.i), ecd.clk.eq(eclk), cd.clk.eq(sync_clk)]
    m.submodules.pll = Instance(
        "EHXPLLL",
        p_CLKI_DIV=PLL["CLKI_DIV"], p_CLKFB_DIV=PLL["CLKFB_DIV"],
        p_CLKOP_DIV=PLL["CLKOP_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=PLL["CLKOP_DIV"] - 1,
        p_FEEDBK_PATH="CLKOP", p_OUTDIVIDER_MUXA="DIVA",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        i_CLKI=clk25.i, i_CLKFB=pll_eclk, i_RST=Const(0), i_STDBY=Const(0),
        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0),
        o_CLKOP=pll_eclk, o_LOCK=locked)

    # Alignment: wait after lock, stop the edge clock, pulse the divider's reset, restart.
    lock_ref = Signal()
    m.submodules.lock_sync = FFSynchronizer(locked, lock_ref, o_domain="ref")
    last = SYNC_SEQUENCE[-1][0]
    count = Signal(range(last + 1))
    stop, div_rst, ready = Signal(init=1), Signal(init=1), Signal()
    with m.If(~lock_ref):
        m.d.ref += [count.eq(0), stop.eq(1), div_rst.eq(1), ready.eq(0)]
    with m.Elif(count != last):
        m.d.ref += count.eq(count + 1)
        for at, s, r in SYNC_SEQUENCE:
            with m.If(count == at - 1):
                m.d.ref += [stop.eq(s), div_rst.eq(r)]
                if at == last:
                    m.d.ref += ready.eq(1)
    m.submodules.eclksync = Instance("ECLKSYNCB", i_ECLKI=pll_eclk, i_STOP=stop, o_ECLKO=eclk)
    m.submodules.clkdiv = Instance("CLKDIVF", p_DIV=f"{ECLK_DIV}.0", i_CLKI=eclk, i_RST=div_rst,
                                   i_ALIGNWD=Const(0), o_CDIVX=sync_clk)
    platform.add_clock_constraint(pll_eclk, board.sys_hz * ECLK_DIV)
    reset_from_lock(m, ready)


BOARD = Board(
    name="ulx3s",
    title="Radiona ULX3S (ECP5 LFE5U-85F-6BG381C)",
    platform=ULX3S_85F_Platform,
    sys_hz=60_000_000,
    baud=3_000_000,
    usb_uart="FTDI FT231X: up to 3 Mbaud",
    samples_per_clock=4,
    clock_plan="25 MHz oscillator -> EHXPLLL (VCO 600 MHz) -> 120 MHz ECLKSYNCB eclk (Bob's "
               "IDDRX2F) -> CLKDIVF /2 -> 60 MHz sync",
    clock=clock,
    io_attrs={"IO_TYPE": "LVCMOS33"},
    # GPIO header: 0+ 0- state, 1+ 1- intensity, 2+ laser, 2- sync.
    alice=RolePins(("gpio", 0), ("0+", "0-", "1+", "1-", "2+", "2-")),
    # 14+ 15+ 16+ 17+: detectors 0-3; 18+: sync in. Right-hand I/O banks 2 and 3 (edge clocks and
    # IDDRX2F gearing; the top banks have neither), true pins only (the - pins have no gearing).
    bob=RolePins(("gpio", 0), ("14+", "15+", "16+", "17+", "18+")),
    loader_board="ulx3s",
)
