"""Arty A7-35T (Artix-7 XC7A35T): 100 MHz oscillator, MMCM to 96 MHz, FT2232HQ UART at 12 Mbaud.

Vivado is not available here, so this board is elaborated and written as Verilog and constraints
only. Alice on PMOD JA, Bob on PMOD JB. Until the tagger has an ISERDESE2 path it samples once per
clock (generic): 96 MHz gives 10.4 ns bins.
"""

from amaranth import *
from amaranth.lib import io
from amaranth_boards.arty_a7 import ArtyA7_35Platform

from .base import Board, RolePins, reset_from_lock

__all__ = ["BOARD", "MMCM"]

#: MMCME2_BASE: VCO = 100 MHz * CLKFBOUT_MULT_F / DIVCLK_DIVIDE = 1200 MHz (600-1200 allowed at
#: -1); CLKOUT0 = VCO / CLKOUT0_DIVIDE_F = 96 MHz (12 Mbaud is divisor 8).
MMCM = {"DIVCLK_DIVIDE": 1, "CLKFBOUT_MULT_F": 12.0, "CLKOUT0_DIVIDE_F": 12.5}
REF_HZ = 100_000_000


def clock(m, platform, board):
    """100 MHz E3 -> MMCME2_BASE -> BUFG -> 96 MHz ``sync``, reset until lock."""
    m.domains.sync = cd = ClockDomain("sync")
    m.submodules.clk100 = clk100 = io.Buffer("i", platform.request("clk100", 0, dir="-"))
    locked, fb, out0 = Signal(name="locked"), Signal(name="mmcm_fb"), Signal(name="mmcm_out0")
    m.submodules.mmcm = Instance(
        "MMCME2_BASE",
        p_CLKIN1_PERIOD=1e9 / REF_HZ, p_DIVCLK_DIVIDE=MMCM["DIVCLK_DIVIDE"],
        p_CLKFBOUT_MULT_F=MMCM["CLKFBOUT_MULT_F"], p_CLKOUT0_DIVIDE_F=MMCM["CLKOUT0_DIVIDE_F"],
        i_CLKIN1=clk100.i, i_CLKFBIN=fb, o_CLKFBOUT=fb, i_RST=Const(0), i_PWRDWN=Const(0),
        o_CLKOUT0=out0, o_LOCKED=locked)
    sys_clk = Signal()
    m.submodules.bufg = Instance("BUFG", i_I=out0, o_O=sys_clk)
    m.d.comb += cd.clk.eq(sys_clk)
    platform.add_clock_constraint(sys_clk, board.sys_hz)
    reset_from_lock(m, locked)


BOARD = Board(
    name="arty_a7",
    title="Digilent Arty A7-35T (XC7A35T-1CSG324)",
    platform=ArtyA7_35Platform,
    sys_hz=96_000_000,
    baud=12_000_000,
    usb_uart="FTDI FT2232HQ, channel B: up to 12 Mbaud",
    samples_per_clock=1,
    clock_plan="100 MHz oscillator -> MMCME2_BASE (VCO 1200 MHz) -> BUFG -> 96 MHz sync",
    clock=clock,
    io_attrs={"IOSTANDARD": "LVCMOS33"},
    alice=RolePins(("pmod", 0), (1, 2, 3, 4, 7, 8)),
    bob=RolePins(("pmod", 1), (1, 2, 3, 4, 7)),
    loader_board="arty_a7_35t",
    build_kind="verilog",
    notes="Vivado is not available: elaborated and written as Verilog + XDC only.",
)
