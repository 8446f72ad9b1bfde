"""Per-channel phase histograms in block RAM: one count per (channel, phase bin).

Each clock every channel may add one count at bin ``phase >> shift`` (phases past the last bin
are not counted). A bin is a 32-bit counter updated read-modify-write in a two-clock pipeline,
with the previous clock's write forwarded so back-to-back counts in one bin are not lost.
``clear`` zeroes every bin in ``bins`` clocks (``clearing`` is 1 meanwhile; counts are not
taken during it). The host reads element ``ch * bins + bin`` through ``r_addr``/``r_data``
(synchronous: data one clock after the address); elements past ``CHANNELS * bins`` (the register
map has room for ``HIST_BINS`` per channel) read 0.

``bins`` is per board (``gateware.cores.tagger.TaggerParams``, reported in ``tagger.info``): a
power of two up to ``HIST_BINS``. A board built without histograms (``bins`` 0) has no
``PhaseHistogram`` at all; the host then builds them from the DETECTION records
(``controller.tagger.Tagger.histograms``).
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..spec.tagger import CHANNELS, PHASE_BITS, HIST_BINS

__all__ = ["PhaseHistogram"]


class PhaseHistogram(wiring.Component):
    """``CHANNELS`` histograms of ``bins`` 32-bit bins (a power of two, 2 to ``HIST_BINS``)."""

    def __init__(self, bins=HIST_BINS):
        if bins < 2 or bins > HIST_BINS or bins & (bins - 1):
            raise ValueError(f"PhaseHistogram: {bins} bins; use a power of two from 2 to "
                             f"{HIST_BINS}")
        self.bins = bins
        super().__init__({
            "valid": In(1).array(CHANNELS),
            "phase": In(PHASE_BITS).array(CHANNELS),
            "shift": In(4),
            "clear": In(1),
            "clearing": Out(1),
            "r_addr": In(range(CHANNELS * HIST_BINS)),
            "r_data": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        bins = self.bins
        bin_bits = (bins - 1).bit_length()
        sweep = Signal(range(bins + 1), init=bins)   # bins: not clearing
        m.d.comb += self.clearing.eq(sweep != bins)
        with m.If(self.clear):
            m.d.sync += sweep.eq(0)
        with m.Elif(self.clearing):
            m.d.sync += sweep.eq(sweep + 1)

        host_ch = Signal(range(CHANNELS * HIST_BINS // bins))   # CHANNELS and up: past the end
        m.d.sync += host_ch.eq(self.r_addr >> bin_bits)
        for ch in range(CHANNELS):
            mem = Memory(shape=32, depth=bins, init=[])
            m.submodules[f"hist{ch}"] = mem
            rmw = mem.read_port(transparent_for=())
            host = mem.read_port()
            wr = mem.write_port()

            shifted = Signal(PHASE_BITS, name=f"shifted{ch}")
            m.d.comb += shifted.eq(self.phase[ch] >> self.shift)
            hit = Signal(name=f"hit{ch}")
            m.d.comb += [hit.eq(self.valid[ch] & (shifted < bins) & ~self.clearing),
                         rmw.addr.eq(shifted[:bin_bits])]
            # Stage 2: the read data is there; add one, forwarding last clock's write.
            s2_valid = Signal(name=f"s2_valid{ch}")
            s2_addr = Signal(bin_bits, name=f"s2_addr{ch}")
            last_valid = Signal(name=f"last_valid{ch}")
            last_addr = Signal(bin_bits, name=f"last_addr{ch}")
            last_data = Signal(32, name=f"last_data{ch}")
            m.d.sync += [s2_valid.eq(hit), s2_addr.eq(rmw.addr)]
            count = Signal(32, name=f"count{ch}")
            m.d.comb += count.eq(Mux(last_valid & (last_addr == s2_addr), last_data, rmw.data) + 1)
            with m.If(self.clearing):
                m.d.comb += [wr.en.eq(1), wr.addr.eq(sweep), wr.data.eq(0)]
                m.d.sync += last_valid.eq(0)
            with m.Else():
                m.d.comb += [wr.en.eq(s2_valid), wr.addr.eq(s2_addr), wr.data.eq(count)]
                m.d.sync += [last_valid.eq(s2_valid), last_addr.eq(s2_addr), last_data.eq(count)]

            m.d.comb += host.addr.eq(self.r_addr[:bin_bits])
            with m.If(host_ch == ch):
                m.d.comb += self.r_data.eq(host.data)
        return m
