"""The input sampler and first-edge detector, in the Amaranth simulator (and by elaboration for
the vendor primitives, which only hardware can exercise)."""

import gc
import random

import pytest
from amaranth import Instance, IOPort
from amaranth.lib import io

from gateware.cores.sampler import FirstEdge, Sampler, SimSampler

from gwsim import run

# Elaborating a Sampler directly (to look for its primitive) leaves it "unused" for Amaranth.
pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def edges_of(vectors, samples):
    """Reference: per clock, the first 0->1 step (the previous clock's last sample included)."""
    out, last = [], 0
    for v in vectors:
        bits = [(v >> j) & 1 for j in range(samples)]
        prev = [last] + bits[:-1]
        rising = [j for j in range(samples) if bits[j] and not prev[j]]
        out.append(rising[0] if rising else None)
        last = bits[-1]
    return out


@pytest.mark.parametrize("samples", [1, 2, 4])
def test_first_edge_matches_reference(samples):
    rng = random.Random(samples)
    vectors = [rng.getrandbits(samples) for _ in range(300)]
    # Edges straddling the clock boundary: last sample high, then all high (no edge), then low.
    vectors += [1 << (samples - 1), (1 << samples) - 1, 0, 1, 0]
    dut = FirstEdge(samples)
    got = []
    latency = 3   # clocks: two synchroniser stages and the edge register

    async def bench(ctx):
        for c, v in enumerate(vectors + [0] * (latency + 1)):
            ctx.set(dut.i_samples, v)
            await ctx.tick()
            if c >= latency - 1:   # the vector set before tick c is seen after tick c + 2
                got.append(ctx.get(dut.o_index) if ctx.get(dut.o_edge) else None)

    run(dut, bench, name=f"first_edge_{samples}")
    assert got[:len(vectors)] == edges_of(vectors, samples)


def test_pulse_shorter_than_a_clock_is_caught():
    """At 4 samples per clock a one-bin pulse in the middle of a clock is an edge at its bin."""
    dut = FirstEdge(4)
    seen = []

    async def bench(ctx):
        for v in (0, 0b0100, 0, 0, 0, 0):
            ctx.set(dut.i_samples, v)
            await ctx.tick()
            seen.append((ctx.get(dut.o_edge), ctx.get(dut.o_index)))

    run(dut, bench, name="short_pulse")
    assert [s for s in seen if s[0]] == [(1, 2)]


def test_sim_sampler_registers_the_vector():
    dut = SimSampler(2)
    seen = []

    async def bench(ctx):
        for v in (0b01, 0b10, 0b11):
            ctx.set(dut.i_samples, v)
            await ctx.tick()
            seen.append(ctx.get(dut.o_samples))

    run(dut, bench, name="sim_sampler")
    assert seen == [0b01, 0b10, 0b11]


class _Platform:
    """Just enough of a platform for ``Sampler`` to pick its primitive."""

    def __init__(self, family):
        self.family = family


@pytest.mark.parametrize("family,samples,primitive", [("ice40", 2, "SB_IO"),
                                                      ("ecp5", 4, "IDDRX2F")])
def test_platform_picks_the_primitive(family, samples, primitive):
    pad = IOPort(1, name="pad")
    port = pad if family == "ice40" else io.SingleEndedPort(pad)
    m = Sampler(samples, port=port).elaborate(_Platform(family))
    subs = [sub for sub, _ in m._named_submodules.values()]   # (elaboratable, source location)
    assert [sub.type for sub in subs if isinstance(sub, Instance)] == [primitive]
    del m, subs
    gc.collect()   # drop the never-built objects while the warning filter is active


def test_generic_path_and_refusals():
    Sampler(1).elaborate(None)   # one sample per clock works anywhere
    with pytest.raises(ValueError, match="SimSampler"):
        Sampler(2).elaborate(None)
    with pytest.raises(ValueError, match="need the pad"):
        Sampler(2).elaborate(_Platform("ice40"))
    with pytest.raises(ValueError, match="ECP5"):
        Sampler(4, port=IOPort(1, name="pad")).elaborate(_Platform("ice40"))
    with pytest.raises(ValueError, match="samples per clock"):
        Sampler(3)
    gc.collect()   # drop the never-built objects while the warning filter is active
