"""The link top under cocotb on Verilator, driven through its UART pins (12 Mbaud, 48 MHz)."""

from pathlib import Path

import pytest

from gateware import rtlsim
from gateware.top import NodeTop

pytestmark = pytest.mark.cocotb

HERE = Path(__file__).parent
VECTORS = HERE.parent / "vectors" / "link_session.json"


@pytest.fixture(scope="module")
def link_build():
    # git_hash is pinned so the build (and its cache key) does not change with every commit.
    top = NodeTop(clk_hz=48_000_000, baud=12_000_000, git_hash=0x1234ABCD, flush_cycles=64)
    return rtlsim.build("node_top", rtlsim.verilog(top, "node_top"))


@pytest.mark.parametrize("testcase", ["test_shared_vectors", "test_back_to_back_requests",
                                      "test_corruption_then_recovery", "test_loopback_stream"])
def test_link_top(link_build, tmp_path, testcase):
    rtlsim.run("node_top", link_build, HERE / "cocotb_link.py", test_dir=tmp_path,
               testcase=testcase, seed=20261127,
               extra_env={"UART_DIVISOR": "4", "LINK_VECTORS": str(VECTORS)})
