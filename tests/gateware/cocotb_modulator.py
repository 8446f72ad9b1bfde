"""cocotb tests of Alice's modulator core on Verilator, scored slot by slot against the model.

Each test plays one script of ``cocotb_modulator_scenarios`` (named by the test) and compares
the pins (through ``hil.bfm.modulator.ModulatorMonitor``), the pulse timing, the REPORTS records
and the underflow counter with ``expected(script)``. Random choices use COCOTB_RANDOM_SEED.
"""

import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly

from hil.bfm.modulator import ModulatorMonitor
from cocotb_modulator_scenarios import scenarios, expected, decode_reports, pulse_offsets_ok

SEED = int(os.environ.get("COCOTB_RANDOM_SEED", "1"))
#: Clock cycles at most for a scenario (a hung one fails instead of running forever).
DEADLINE = 20_000


class TB:
    """Clock, reset, the pin monitor and the REPORTS sink around the core."""

    def __init__(self, dut):
        self.dut = dut
        self.config = {}
        self.reports = bytearray()
        cocotb.start_soon(Clock(dut.clk, 20_834, unit="ps").start())
        self.monitor = ModulatorMonitor(dut.clk, state=dut.pins__state, intensity=dut.pins__intensity,
                                        laser=dut.pins__laser, sync=dut.pins__sync,
                                        slot_start=dut.slot_start)
        cocotb.start_soon(self._report_sink())

    async def reset(self):
        self.dut.rst.value = 1
        self.dut.i_choices__valid.value = 0
        self.dut.o_reports__ready.value = 1
        for name in ("control", "command"):
            getattr(self.dut, name).value = 0
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await FallingEdge(self.dut.clk)

    async def _report_sink(self):
        while True:
            await FallingEdge(self.dut.clk)
            await ReadOnly()
            if int(self.dut.o_reports__valid.value) and int(self.dut.o_reports__ready.value):
                self.reports.append(int(self.dut.o_reports__payload.value))

    async def _mid_cycle_until(self, done, what):
        for _ in range(DEADLINE):
            await FallingEdge(self.dut.clk)
            await ReadOnly()
            if done():
                await FallingEdge(self.dut.clk)
                return
        raise TimeoutError(f"{what} not seen within {DEADLINE} cycles")

    async def play(self, script):
        """Drive ``script`` (at falling edges, so values are stable at the rising edge)."""
        dut = self.dut
        for step in script:
            if step[0] == "set":
                self.config[step[1]] = step[2]
                getattr(dut, step[1]).value = step[2]
                await FallingEdge(dut.clk)
            elif step[0] == "push":
                for byte in step[1]:
                    dut.i_choices__valid.value = 1
                    dut.i_choices__payload.value = byte
                    while True:
                        ready = int(dut.i_choices__ready.value)
                        await FallingEdge(dut.clk)
                        if ready:
                            break
                dut.i_choices__valid.value = 0
            elif step[0] == "slots":
                for _ in range(step[1]):
                    # The cycle after the strobe is the slot's first: act from there, as
                    # test_modulator's Amaranth-simulator driver does.
                    for _ in range(DEADLINE):
                        await ReadOnly()
                        if int(dut.slot_start.value):
                            break
                        await FallingEdge(dut.clk)
                    await FallingEdge(dut.clk)
            elif step[0] == "idle":
                # status.running is bit 0 of the status register (ModStatusLayout).
                await self._mid_cycle_until(lambda: not int(dut.status.value) & 1, "a stopped run")
                await ClockCycles(dut.clk, 48)
                await FallingEdge(dut.clk)

    async def check(self, name, script):
        await ClockCycles(self.dut.clk, 200)
        self.monitor.stop()
        got = [s.as_tuple() for s in self.monitor.slots]
        want, want_reports, want_underflow = expected(script)
        where = f"scenario {name}, COCOTB_RANDOM_SEED={SEED}"
        assert len(got) == len(want), f"{where}: {len(got)} slots played, model {len(want)}"
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{where}: slot {i}: pins (state, intensity, laser, sync) {g}, model {w}"
        delay, width = self.config["trigger_delay"], self.config["trigger_width"]
        for i, slot in enumerate(self.monitor.slots):
            assert pulse_offsets_ok(slot.laser, got[i][2], delay, width), f"{where}: slot {i} laser {slot.laser}"
            assert pulse_offsets_ok(slot.sync, got[i][3], delay, width), f"{where}: slot {i} sync {slot.sync}"
        assert decode_reports(bytes(self.reports)) == decode_reports(want_reports), where
        assert int(self.dut.underflow_slots.value) == want_underflow, where
        assert int(self.dut.reports_lost.value) == 0, where


async def _scenario(dut, name):
    script = scenarios(SEED)[name]
    tb = TB(dut)
    await tb.reset()
    await tb.play(script)
    await tb.check(name, script)


@cocotb.test()
async def prefill_then_underflow(dut):
    """Prefilled choices to the pins slot by slot, then an underflow run reported and counted."""
    await _scenario(dut, "prefill_then_underflow")


@cocotb.test()
async def underflow_refill(dut):
    """Underflow from the start, refills mid-run: each underflow run reported with its range."""
    await _scenario(dut, "underflow_refill")


@cocotb.test()
async def two_runs(dut):
    """Two runs: the slot counter goes on, frames and sync restart with each run."""
    await _scenario(dut, "two_runs")


@cocotb.test()
async def lfsr(dut):
    """The LFSR test pattern from its seed, flagged in every record."""
    await _scenario(dut, "lfsr")
