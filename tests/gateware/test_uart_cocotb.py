"""The UART cores under cocotb on Verilator: an echo top driven through its pins by the BFMs in
``hil.bfm.uart``. Also proves ``gateware.rtlsim`` (build cache, result parsing)."""

from pathlib import Path

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from gateware import rtlsim
from gateware.cores.uart import UARTRx, UARTTx

pytestmark = pytest.mark.cocotb

COCOTB_MODULE = Path(__file__).with_name("cocotb_uart_echo.py")


class UARTEcho(wiring.Component):
    """Echo bytes from ``rx`` to ``tx`` through a 16-byte FIFO; count ``overruns`` and
    ``frame_errors`` (8 bits each, wrapping)."""

    rx: In(1, init=1)
    tx: Out(1, init=1)
    overruns: Out(8)
    frame_errors: Out(8)

    def __init__(self, divisor):
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = UARTRx(self.divisor)
        m.submodules.fifo = buf = fifo.SyncFIFO(width=8, depth=16)
        m.submodules.utx = utx = UARTTx(self.divisor)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx)]
        wiring.connect(m, urx.o_stream, buf.w_stream)
        wiring.connect(m, buf.r_stream, utx.i_stream)
        with m.If(urx.overrun):
            m.d.sync += self.overruns.eq(self.overruns + 1)
        with m.If(urx.frame_error):
            m.d.sync += self.frame_errors.eq(self.frame_errors + 1)
        return m


@pytest.fixture(scope="module")
def echo_build():
    text = rtlsim.verilog(UARTEcho(4), "uart_echo")
    return rtlsim.build("uart_echo", text)


def test_uart_echo(echo_build, tmp_path):
    rtlsim.run("uart_echo", echo_build, COCOTB_MODULE, test_dir=tmp_path, seed=1234,
               extra_env={"UART_DIVISOR": "4"})


def test_build_is_cached(echo_build):
    """A second build of the same text reuses the folder without recompiling."""
    model = echo_build / "uart_echo"
    mtime = model.stat().st_mtime_ns
    again = rtlsim.build("uart_echo", rtlsim.verilog(UARTEcho(4), "uart_echo"))
    assert again == echo_build
    assert model.stat().st_mtime_ns == mtime


def test_run_reports_failures(echo_build, tmp_path):
    """A failing cocotb test surfaces as an AssertionError naming it and the seed."""
    module = tmp_path / "cocotb_always_fails.py"
    module.write_text("import cocotb\n\n@cocotb.test()\nasync def test_doomed(dut):\n"
                      "    assert False, 'on purpose'\n")
    with pytest.raises(AssertionError) as failure:
        rtlsim.run("uart_echo", echo_build, module, test_dir=tmp_path / "run", seed=5)
    assert "1 of 1 tests failed" in str(failure.value)
    assert "test_doomed" in str(failure.value)
    assert "COCOTB_RANDOM_SEED=5" in str(failure.value)


def test_run_reports_no_tests(echo_build, tmp_path):
    """A testcase filter that matches nothing is an error, not a silent pass."""
    with pytest.raises(AssertionError, match="no test ran"):
        rtlsim.run("uart_echo", echo_build, COCOTB_MODULE, test_dir=tmp_path,
                   testcase="test_does_not_exist", seed=1)
