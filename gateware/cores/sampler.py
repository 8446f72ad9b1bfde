"""Input sampling of the detector and sync pins: N samples per clock, then the first rising edge.

``Sampler(samples=N)`` turns one pin (``i_pin``) into ``o_samples``, N samples per clock of the
``sync`` domain, earliest sample in bit 0. One *bin* is a clock period / N:

* N = 1, any platform (and simulation): the pin registered once per clock (the generic path).
* N = 2 on iCE40 (``SB_IO`` input DDR): ``D_IN_0`` (rising edge) is the earlier sample seen by the
  fabric, ``D_IN_1`` (the following falling edge) the later one.
* N = 4 on ECP5 (``IDDRX2F``, gearing 4:1): ``Q0`` earliest. It needs an edge clock at twice the
  ``sync`` clock in domain ``eclk_domain`` (the board's PLL / CLKDIVF, wired in issue 4).

In simulation there is no pin faster than the clock: ``SimSampler`` stands in for the primitive and
takes the N samples on ``i_samples`` (the cocotb detector model drives them).

``FirstEdge`` synchronises the samples (two flip-flops: a DDR output still comes from an
asynchronous pin) and finds the first rising edge in each clock, across the boundary with the
previous clock's last sample.
"""

from amaranth import *
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["Sampler", "SimSampler", "FirstEdge", "SAMPLES_BY_FAMILY"]

#: Samples per clock each FPGA family's input primitive gives.
SAMPLES_BY_FAMILY = {"generic": 1, "ice40": 2, "ecp5": 4}


def _family(platform):
    # Amaranth's platforms say "iCE40" and "ECP5"; compare in lower case.
    family = getattr(platform, "family", None) if platform is not None else None
    return family.lower() if isinstance(family, str) else family


class Sampler(wiring.Component):
    """Sample an input ``samples`` times per clock onto ``o_samples`` (bit 0 earliest).

    ``samples`` is 1 (generic), 2 (iCE40 DDR) or 4 (ECP5 IDDRX2F); the platform picks the
    primitive, which needs the pad itself: ``port``, from ``platform.request(name, dir="-")``
    (an ``IOPort`` for iCE40's SB_IO, a port-like for ECP5). With one sample per clock and no
    ``port``, the ``i_pin`` signal is sampled instead (an already-buffered input). ``eclk_domain``
    is the ECP5 edge clock domain (twice the ``sync`` clock).
    """

    def __init__(self, samples=1, *, port=None, eclk_domain="eclk"):
        if samples not in (1, 2, 4):
            raise ValueError(f"Sampler: {samples} samples per clock; use 1 (generic), 2 (iCE40 "
                             f"SB_IO DDR) or 4 (ECP5 IDDRX2F)")
        self.samples = samples
        self.port = port
        self.eclk_domain = eclk_domain
        super().__init__({"i_pin": In(1), "o_samples": Out(samples)})

    def elaborate(self, platform):
        m = Module()
        family = _family(platform)
        if self.samples > 1 and self.port is None and family in ("ice40", "ecp5"):
            raise ValueError(f"Sampler: {self.samples} samples per clock on {family} need the "
                             f"pad: pass port=platform.request(name, dir='-')")
        if self.samples == 1:
            if self.port is None:
                m.d.sync += self.o_samples.eq(self.i_pin)
            else:
                m.submodules.buf = buf = io.Buffer("i", self.port)
                m.d.sync += self.o_samples.eq(buf.i)
        elif self.samples == 2 and family == "ice40":
            d0, d1 = Signal(), Signal()
            # SB_IO takes the pad itself: an IOPort, or the IO value under a port-like from
            # ``platform.request(..., dir="-")`` (which may be a slice of a wider resource).
            pad = self.port
            if isinstance(pad, io.SingleEndedPort):
                if any(pad.invert):
                    raise ValueError("Sampler: an inverted pad cannot feed SB_IO's DDR input")
                pad = pad.io
            # PIN_TYPE 0b000000: registered DDR input, no output.
            m.submodules.ddr = Instance(
                "SB_IO", p_PIN_TYPE=C(0b000000, 6), io_PACKAGE_PIN=pad,
                i_INPUT_CLK=ClockSignal("sync"), i_CLOCK_ENABLE=1, o_D_IN_0=d0, o_D_IN_1=d1)
            m.d.comb += self.o_samples.eq(Cat(d0, d1))
        elif self.samples == 4 and family == "ecp5":
            q = Signal(4)
            m.submodules.buf = buf = io.Buffer("i", self.port)
            m.submodules.iddr = Instance(
                "IDDRX2F", i_D=buf.i, i_SCLK=ClockSignal("sync"),
                i_ECLK=ClockSignal(self.eclk_domain), i_RST=0, i_ALIGNWD=0,
                o_Q0=q[0], o_Q1=q[1], o_Q2=q[2], o_Q3=q[3])
            m.d.comb += self.o_samples.eq(q)
        else:
            raise ValueError(
                f"Sampler: {self.samples} samples per clock need an iCE40 (2) or ECP5 (4) "
                f"platform, not {family or 'simulation'}; in simulation use SimSampler")
        return m


class SimSampler(wiring.Component):
    """Simulation model of ``Sampler``: ``o_samples`` follows ``i_samples`` (bit 0 earliest).

    The primitives register the pin in the I/O cell; so does this model, so the latency from a
    sample vector to ``o_samples`` is one clock as on hardware.
    """

    def __init__(self, samples=1):
        self.samples = samples
        super().__init__({"i_samples": In(samples), "o_samples": Out(samples)})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.o_samples.eq(self.i_samples)
        return m


class FirstEdge(wiring.Component):
    """Synchronise ``i_samples`` and report the first rising edge of each clock.

    ``o_edge`` is 1 in a clock whose samples hold a 0-to-1 step, the previous clock's last sample
    included; ``o_index`` is the sample index (bin) of the first such step. Later steps in the same
    clock are not reported: one click per input per clock. Latency: 3 clocks (two synchroniser
    stages and the edge register).
    """

    def __init__(self, samples=1):
        self.samples = samples
        super().__init__({
            "i_samples": In(samples),
            "o_edge": Out(1),
            "o_index": Out(range(max(samples, 2))),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.samples
        cur = Signal(n)
        m.submodules.sync = FFSynchronizer(self.i_samples, cur, stages=2)
        last = Signal()
        m.d.sync += last.eq(cur[n - 1])
        prev = Cat(last, cur[:n - 1])   # the sample before each sample
        rising = Signal(n)
        m.d.comb += rising.eq(cur & ~prev)
        index = Signal.like(self.o_index)
        for j in reversed(range(n)):    # the lowest index wins
            with m.If(rising[j]):
                m.d.comb += index.eq(j)
        m.d.sync += [self.o_edge.eq(rising.any()), self.o_index.eq(index)]
        return m
