"""The link top under cocotb on Verilator, driven through its UART pins (12 Mbaud, 48 MHz)."""

from pathlib import Path

import pytest

from gateware import rtlsim
from gateware.spec.registers import Role
from hil.twin import BAUD, CLK_HZ

pytestmark = pytest.mark.cocotb

HERE = Path(__file__).parent
VECTORS = HERE.parent / "vectors" / "link_session.json"


@pytest.fixture(scope="module")
def link_build():
    # The plain LINK image (NodeTop), its UART pins driven by the test; the RTL twin's top
    # (hil.twin.twin_top) wraps the same image with a UART bridge inside the simulation.
    from gateware.top import NodeTop
    top = NodeTop(clk_hz=CLK_HZ, baud=BAUD, role=Role.LINK, git_hash=0)
    name = "link_pins"
    return name, rtlsim.build(name, rtlsim.verilog(top, name)), top.divisor


@pytest.mark.parametrize("testcase", ["test_shared_vectors", "test_back_to_back_requests",
                                      "test_corruption_then_recovery", "test_loopback_stream"])
def test_link_top(link_build, tmp_path, testcase):
    name, build_dir, divisor = link_build
    rtlsim.run(name, build_dir, HERE / "cocotb_link.py", test_dir=tmp_path,
               testcase=testcase, seed=20261127,
               extra_env={"UART_DIVISOR": str(divisor), "LINK_VECTORS": str(VECTORS)})
