"""Shared helpers for the Amaranth-simulator tests: stream put/get with random stalls, a runner.

Set ``QKD_VCD=dir`` to dump a VCD per simulation into ``dir``.
"""

import os
from pathlib import Path

from amaranth.sim import Simulator

#: Simulated clock period in seconds (48 MHz, the boards' system clock).
CLK_PERIOD = 1 / 48e6


async def stall(ctx, rng, p_stall):
    """Wait a random number of cycles: each cycle stalls with probability ``p_stall``."""
    if rng is not None:
        while rng.random() < p_stall:
            await ctx.tick()


async def stream_put(ctx, stream, payload, *, rng=None, p_stall=0.0):
    """Offer one beat on ``stream`` after a random stall and return once it is taken."""
    await stall(ctx, rng, p_stall)
    ctx.set(stream.valid, 1)
    ctx.set(stream.payload, payload)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, rng=None, p_stall=0.0):
    """Take one beat from ``stream`` after a random stall and return its payload."""
    await stall(ctx, rng, p_stall)
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


def run(dut, *testbenches, background=(), deadline_cycles=200_000, name="sim", progress=None):
    """Simulate ``dut`` until every testbench returns; fail if that takes over ``deadline_cycles``.

    Each testbench is ``async def tb(ctx)``; those in ``background`` may run forever (monitors).
    ``progress`` is a callable returning a string that the timeout message includes.
    """
    sim = Simulator(dut)
    sim.add_clock(CLK_PERIOD)
    done = []
    for tb in testbenches:
        async def wrapper(ctx, tb=tb):
            await tb(ctx)
            done.append(tb)
        sim.add_testbench(wrapper)
    for tb in background:
        sim.add_testbench(tb, background=True)
    cycles = [0]

    async def clock_counter(ctx):
        async for _ in ctx.tick():
            cycles[0] += 1
    sim.add_testbench(clock_counter, background=True)

    def advance():
        # Stop when the critical testbenches are done, or at the deadline if one hangs.
        while sim.advance() and cycles[0] < deadline_cycles:
            pass

    vcd_dir = os.environ.get("QKD_VCD")
    if vcd_dir:
        Path(vcd_dir).mkdir(parents=True, exist_ok=True)
        with sim.write_vcd(str(Path(vcd_dir) / f"{name}.vcd")):
            advance()
    else:
        advance()
    assert len(done) == len(testbenches), \
        f"{name}: {len(testbenches) - len(done)} testbench(es) still running after {deadline_cycles} cycles" \
        + (f"; {progress()}" if progress else "")


async def feed_bytes(ctx, stream, requests, *, gap=0):
    """Offer ``requests`` byte by byte on ``stream`` (a receiver without back-pressure, like a
    UART); an int in ``requests`` is that many idle cycles, ``gap`` idle cycles follow each byte."""
    for raw in requests:
        if isinstance(raw, int):
            await ctx.tick().repeat(raw)
            continue
        for byte in raw:
            ctx.set(stream.valid, 1)
            ctx.set(stream.payload, byte)
            await ctx.tick()
            ctx.set(stream.valid, 0)
            if gap:
                await ctx.tick().repeat(gap)
