"""Alice's modulator core under cocotb on Verilator, scored against the behavioural model."""

from pathlib import Path

import pytest

from gateware import rtlsim
from gateware.cores.modulator import Modulator

from cocotb_modulator_scenarios import CHOICES_DEPTH

pytestmark = pytest.mark.cocotb

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def modulator_build():
    return rtlsim.build("modulator", rtlsim.verilog(
        Modulator(choices_depth=CHOICES_DEPTH, reports_depth=64), "modulator"))


@pytest.mark.parametrize("testcase", ["prefill_then_underflow", "underflow_refill", "two_runs", "lfsr"])
def test_modulator_core(modulator_build, tmp_path, testcase):
    rtlsim.run("modulator", modulator_build, HERE / "cocotb_modulator.py", test_dir=tmp_path,
               testcase=testcase, seed=20261127)
