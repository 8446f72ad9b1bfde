"""ULX3S (ECP5 LFE5U-85F): 25 MHz oscillator, PLL to 60 MHz, FT231X UART at 3 Mbaud.

The FT231X on the ULX3S tops out at 3 Mbaud, so the link runs at 3 Mbaud (divisor 20 at 60 MHz).
60 MHz, not more: the link's request path reaches about 66-69 MHz on this part (docs/boards.md).
Alice on GPIO header pairs 0-2, Bob on pairs 14-16 (right-hand banks, for IDDRX2F). Bob's tagger samples 4 times per clock
(``IDDRX2F``) from an edge clock at 120 MHz: 60 MHz x 4 gives 4.17 ns bins.
"""

from amaranth import *
from amaranth.lib import io
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from .base import Board, RolePins, reset_from_lock

__all__ = ["BOARD", "PLL"]

#: EHXPLLL settings: PFD = 25 MHz / CLKI_DIV = 5 MHz; VCO = PFD * CLKFB_DIV * CLKOP_DIV = 600 MHz
#: (400-800 allowed); CLKOP = VCO / CLKOP_DIV = 60 MHz (sync), CLKOS = VCO / CLKOS_DIV = 120 MHz
#: (Bob's edge clock).
PLL = {"CLKI_DIV": 5, "CLKFB_DIV": 12, "CLKOP_DIV": 10, "CLKOS_DIV": 5}
REF_HZ = 25_000_000


def clock(m, platform, board):
    """25 MHz G2 -> EHXPLLL -> 60 MHz ``sync`` (and 120 MHz ``eclk``), reset until lock."""
    m.domains.sync = cd = ClockDomain("sync")
    m.domains.eclk = ecd = ClockDomain("eclk", reset_less=True)
    m.submodules.clk25 = clk25 = io.Buffer("i", platform.request("clk25", 0, dir="-"))
    locked, pll_clk, pll_eclk = Signal(name="locked"), Signal(name="pll_clk"), Signal(name="pll_eclk")
    m.d.comb += [cd.clk.eq(pll_clk), ecd.clk.eq(pll_eclk)]
    m.submodules.pll = Instance(
        "EHXPLLL",
        p_CLKI_DIV=PLL["CLKI_DIV"], p_CLKFB_DIV=PLL["CLKFB_DIV"],
        p_CLKOP_DIV=PLL["CLKOP_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_CPHASE=PLL["CLKOP_DIV"] - 1,
        p_CLKOS_DIV=PLL["CLKOS_DIV"], p_CLKOS_ENABLE="ENABLED", p_CLKOS_CPHASE=PLL["CLKOS_DIV"] - 1,
        p_FEEDBK_PATH="CLKOP", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
        a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
        a_MFG_GMCREF_SEL="2",
        i_CLKI=clk25.i, i_CLKFB=pll_clk, i_RST=Const(0), i_STDBY=Const(0),
        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0),
        o_CLKOP=pll_clk, o_CLKOS=pll_eclk, o_LOCK=locked)
    platform.add_clock_constraint(pll_clk, board.sys_hz)
    platform.add_clock_constraint(pll_eclk, 2 * board.sys_hz)
    reset_from_lock(m, locked)


BOARD = Board(
    name="ulx3s",
    title="Radiona ULX3S (ECP5 LFE5U-85F-6BG381C)",
    platform=ULX3S_85F_Platform,
    sys_hz=60_000_000,
    baud=3_000_000,
    usb_uart="FTDI FT231X: up to 3 Mbaud",
    samples_per_clock=4,
    clock_plan="25 MHz oscillator -> EHXPLLL (VCO 600 MHz) -> 60 MHz sync, 120 MHz eclk (Bob's IDDRX2F)",
    clock=clock,
    io_attrs={"IO_TYPE": "LVCMOS33"},
    # GPIO header: 0+ 0- state, 1+ 1- intensity, 2+ laser, 2- sync.
    alice=RolePins(("gpio", 0), ("0+", "0-", "1+", "1-", "2+", "2-")),
    # 14+ 14- 15+ 15-: detectors 0-3; 16+: sync in. These sit on the right-hand I/O banks,
    # where the ECP5 has edge clocks and IDDRX2F gearing (the top banks have neither).
    bob=RolePins(("gpio", 0), ("14+", "14-", "15+", "15-", "16+")),
    loader_board="ulx3s",
)
