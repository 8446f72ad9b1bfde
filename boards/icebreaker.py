"""iCEBreaker (iCE40UP5K-SG48): 12 MHz oscillator, PLL to 30 MHz, FT2232H UART at 6 Mbaud.

Alice on PMOD1A, Bob on PMOD1B (PMOD2 keeps the snap-off button/LED board). The tagger samples
twice per clock (``SB_IO`` DDR input): 30 MHz x 2 gives 16.7 ns bins.

Why 30 MHz and not 48: the UP5K is the slow, low-power iCE40; its routing costs 1.8-3.6 ns per
hop, and the link's executor and Alice's slot clock still have paths of 7-9 logic levels after
pipelining (``docs/boards.md``, "Timing status"): LINK reaches 35.0 MHz and ALICE 34.0 MHz.
BOB fits (5 181 of 5 280 logic cells, without hardware histograms: ``tagger`` below) and
reaches 31.5 MHz (nextpnr seed 1). The UART rate must divide the clock exactly and be one the
FT2232H makes exactly (12 MHz / n): 6 Mbaud is 5 clocks per bit.
"""

from amaranth import *
from amaranth_boards.icebreaker import ICEBreakerPlatform

from gateware.cores.tagger import TaggerParams

from .base import Board, RolePins, reset_from_lock

__all__ = ["BOARD", "PLL"]

#: SB_PLL40_PAD settings (icepll -i 12 -o 30): f_out = 12 MHz * (DIVF + 1) / (2**DIVQ * (DIVR + 1)),
#: VCO 960 MHz (range 533-1066), PFD 12 MHz.
PLL = {"DIVR": 0, "DIVF": 79, "DIVQ": 5, "FILTER_RANGE": 1}
REF_HZ = 12_000_000


def clock(m, platform, board):
    """12 MHz pin 35 -> SB_PLL40_PAD -> 30 MHz ``sync``, held in reset until the PLL locks."""
    m.domains.sync = cd = ClockDomain("sync")
    clk12 = platform.request("clk12", 0, dir="-")
    locked, pll_clk = Signal(name="locked"), Signal(name="pll_clk")
    m.d.comb += cd.clk.eq(pll_clk)
    m.submodules.pll = Instance(
        "SB_PLL40_PAD",
        p_FEEDBACK_PATH="SIMPLE",
        p_DIVR=PLL["DIVR"], p_DIVF=PLL["DIVF"], p_DIVQ=PLL["DIVQ"],
        p_FILTER_RANGE=PLL["FILTER_RANGE"],
        i_PACKAGEPIN=clk12.io, i_RESETB=Const(1), i_BYPASS=Const(0),
        o_PLLOUTGLOBAL=pll_clk, o_LOCK=locked)
    platform.add_clock_constraint(pll_clk, board.sys_hz)
    reset_from_lock(m, locked)


BOARD = Board(
    name="icebreaker",
    title="1BitSquared iCEBreaker (iCE40UP5K-SG48)",
    platform=ICEBreakerPlatform,
    sys_hz=30_000_000,
    baud=6_000_000,
    usb_uart="FTDI FT2232H, channel B: up to 12 Mbaud (12 MHz / n exactly)",
    samples_per_clock=2,
    clock_plan="12 MHz oscillator -> SB_PLL40_PAD (DIVR 0, DIVF 79, DIVQ 5) -> 30 MHz sync",
    clock=clock,
    io_attrs={"IO_STANDARD": "SB_LVCMOS"},
    # PMOD1A pins 1-4, 7-8: state[0], state[1], intensity[0], intensity[1], laser, sync.
    alice=RolePins(("pmod", 0), (1, 2, 3, 4, 7, 8)),
    # PMOD1B pins 1-4: detectors 0-3; pin 7: sync in.
    bob=RolePins(("pmod", 1), (1, 2, 3, 4, 7)),
    loader_board="ice40_generic",
    # No phase histograms in the fabric (the host builds them from the DETECTION records), the
    # item queue in block RAM: what makes BOB fit the UP5K's 5 280 logic cells.
    tagger=TaggerParams(hist_bins=0, queue_memory=True),
)
