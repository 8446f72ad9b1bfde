"""The tagger on Verilator under cocotb, scoreboarded bit for bit against the golden model.

Two builds: a record-stream top (the ``Tagger`` core, 4 samples per clock as on ECP5, a small
event FIFO so back-pressure overflows it quickly, and a large capture FIFO the test drains at the
end) for the randomised cases, and Bob's ``NodeTop`` (2 samples per clock as on iCE40) read
through its UART with the host decoder. The seed is COCOTB_RANDOM_SEED, printed on failure.
"""

from pathlib import Path

import pytest
from amaranth import Module
from amaranth.lib import wiring, fifo, stream
from amaranth.lib.wiring import In, Out

from gateware import rtlsim
from gateware.cores.tagger import Tagger, register_members
from gateware.spec.registers import Role
from gateware.spec.tagger import CHANNELS
from gateware.top import NodeTop

pytestmark = pytest.mark.cocotb

HERE = Path(__file__).parent
SEED = 20261127
STREAM_SAMPLES = 4
STREAM_FIFO_WORDS = 64
NODE_SAMPLES = 2


class TaggerStreamTop(wiring.Component):
    """``Tagger`` with its registers as ports; its records go into a capture FIFO that takes them
    while ``sink_ready`` is 1 (0 is back-pressure) and that the test drains on ``o_records``."""

    def __init__(self, samples, fifo_words, capture_words=8192):
        self.samples = samples
        self.fifo_words = fifo_words
        self.capture_words = capture_words
        members = {"det": In(samples).array(CHANNELS), "sync": In(samples), "sink_ready": In(1),
                   "o_records": Out(stream.Signature(32))}
        members.update(register_members())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tagger = tagger = Tagger(self.samples, fifo_words=self.fifo_words)
        m.submodules.capture = cap = fifo.SyncFIFOBuffered(width=32, depth=self.capture_words)
        for name in register_members():
            ours, theirs = getattr(self, name), getattr(tagger, name)
            flow = tagger.signature.members[name].flow
            pairs = zip(ours, theirs) if isinstance(ours, list) else [(ours, theirs)]
            for a, b in pairs:
                m.d.comb += (a.eq(b) if flow == Out else b.eq(a))
        for ch in range(CHANNELS):
            m.d.comb += tagger.det[ch].eq(self.det[ch])
        m.d.comb += [
            tagger.sync.eq(self.sync),
            cap.w_data.eq(tagger.o_records.payload),
            cap.w_en.eq(tagger.o_records.valid & self.sink_ready),
            tagger.o_records.ready.eq(cap.w_rdy & self.sink_ready),
            self.o_records.payload.eq(cap.r_data), self.o_records.valid.eq(cap.r_rdy),
            cap.r_en.eq(self.o_records.ready),
        ]
        return m


@pytest.fixture(scope="module")
def stream_build():
    top = TaggerStreamTop(STREAM_SAMPLES, STREAM_FIFO_WORDS)
    return rtlsim.build("tagger_stream", rtlsim.verilog(top, "tagger_stream"))


@pytest.fixture(scope="module")
def node_build():
    # git_hash is pinned so the build (and its cache key) does not change with every commit.
    top = NodeTop(clk_hz=48_000_000, baud=12_000_000, git_hash=0x1234ABCD, flush_cycles=64,
                  role=Role.BOB, samples=NODE_SAMPLES, events_words=512)
    return rtlsim.build("bob_top", rtlsim.verilog(top, "bob_top"))


STREAM_CASES = ["test_poisson_trains", "test_bursts_and_dead_time", "test_gate_edges",
                "test_simultaneous_clicks", "test_sync_loss_and_reacquisition",
                "test_full_rate_front_end", "test_overflow_under_back_pressure",
                "test_stop_and_start_mid_run"]


@pytest.mark.parametrize("testcase", STREAM_CASES)
def test_tagger_stream(stream_build, tmp_path, testcase):
    rtlsim.run("tagger_stream", stream_build, HERE / "cocotb_tagger.py", test_dir=tmp_path,
               testcase=testcase, seed=SEED,
               extra_env={"TAGGER_SAMPLES": str(STREAM_SAMPLES),
                          "TAGGER_FIFO_WORDS": str(STREAM_FIFO_WORDS)})


@pytest.mark.slow
@pytest.mark.parametrize("testcase", ["test_poisson_trains", "test_sync_loss_and_reacquisition",
                                      "test_overflow_under_back_pressure"])
def test_tagger_stream_long(stream_build, tmp_path, testcase):
    """Eight times longer click trains (and another seed)."""
    rtlsim.run("tagger_stream", stream_build, HERE / "cocotb_tagger.py", test_dir=tmp_path,
               testcase=testcase, seed=SEED + 1000,
               extra_env={"TAGGER_SAMPLES": str(STREAM_SAMPLES),
                          "TAGGER_FIFO_WORDS": str(STREAM_FIFO_WORDS), "TAGGER_SCALE": "8"})


def test_tagger_through_uart(node_build, tmp_path):
    rtlsim.run("bob_top", node_build, HERE / "cocotb_tagger_node.py", test_dir=tmp_path,
               testcase="test_records_over_the_link", seed=SEED, extra_env={"TAGGER_SAMPLES": str(NODE_SAMPLES), "UART_DIVISOR": "4"})
