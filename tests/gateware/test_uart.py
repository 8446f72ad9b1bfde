"""UARTRx / UARTTx in the Amaranth simulator: pin-level stimulus with baud mismatch, back-pressure,
overrun and framing errors, back-to-back transmission."""

import random

import pytest

from gateware.cores.uart import UARTRx, UARTTx, divisor_for
from gwsim import run, stream_get, stream_put

DIVISORS = [4, 5, 16, 104]


# The refused UARTRx(3) is an Elaboratable that never gets elaborated; that is the point.
@pytest.mark.filterwarnings("ignore:.*created but never used")
def test_divisor_for():
    assert divisor_for(48_000_000, 12_000_000) == 4
    assert divisor_for(48_000_000, 115_200) == 417
    assert divisor_for(12_000_000, 115_200) == 104   # 0.16 % off
    with pytest.raises(ValueError, match="not reachable"):
        divisor_for(48_000_000, 10_000_000)          # 4.8 -> 5 is 4 % off
    with pytest.raises(ValueError, match="minimum"):
        divisor_for(48_000_000, 24_000_000)
    with pytest.raises(ValueError, match="divisor"):
        UARTRx(3)


async def drive_byte(ctx, pin, byte, period, phase, stop=1):
    """Drive one 8N1 byte on ``pin`` with a bit period of ``period`` cycles (may be fractional).

    ``phase`` is the fractional cycle position the byte starts at; returns the phase it ends at.
    """
    bits = [0] + [(byte >> n) & 1 for n in range(8)] + [stop]
    for n, bit in enumerate(bits):
        ctx.set(pin, bit)
        edge = phase + period
        await ctx.tick().repeat(int(edge) - int(phase))
        phase = edge
    ctx.set(pin, 1)
    return phase


def _rx_sim(divisor, seed, *, mismatch, data, p_stall=0.3, gaps=True):
    rng = random.Random(seed)
    dut = UARTRx(divisor)
    got, pulses = [], {"overrun": 0, "frame_error": 0}

    async def line(ctx):
        phase = rng.random()
        await ctx.tick().repeat(3)
        for byte in data:
            if gaps and rng.random() < 0.5:
                idle = rng.randrange(1, 2 * divisor)
                await ctx.tick().repeat(idle)
            phase = await drive_byte(ctx, dut.rx, byte, divisor * (1 + mismatch), phase)
        await ctx.tick().repeat(2 * divisor)

    async def sink(ctx):
        for _ in data:
            got.append(await stream_get(ctx, dut.o_stream, rng=rng, p_stall=p_stall))
        ctx.set(dut.o_stream.ready, 1)
        await ctx.tick().repeat(12 * divisor)
        assert not ctx.get(dut.o_stream.valid), f"seed={seed}: extra byte"

    async def monitor(ctx):
        async for _, _, overrun, frame_error in ctx.tick().sample(dut.overrun, dut.frame_error):
            pulses["overrun"] += overrun
            pulses["frame_error"] += frame_error

    run(dut, line, sink, background=[monitor], name=f"uart_rx_{divisor}_{seed}",
        deadline_cycles=(len(data) + 4) * 14 * divisor + 1000,
        progress=lambda: f"seed={seed}, sent {data.hex()}, received {bytes(got).hex()}, {pulses}")
    return got, pulses


@pytest.mark.parametrize("divisor", DIVISORS)
@pytest.mark.parametrize("seed", range(2))
def test_rx_random(divisor, seed):
    rng = random.Random(seed)
    n = 32 if divisor < 20 else 6
    data = bytes(rng.getrandbits(8) for _ in range(n))
    got, pulses = _rx_sim(divisor, seed, mismatch=0.0, data=data)
    assert bytes(got) == data, f"seed={seed}"
    assert pulses == {"overrun": 0, "frame_error": 0}, f"seed={seed}"


@pytest.mark.parametrize("divisor, mismatch", [
    (4, -0.015), (4, 0.015), (5, -0.02), (5, 0.02),
    (16, -0.03), (16, 0.03), (104, -0.035), (104, 0.035),
])
def test_rx_baud_mismatch(divisor, mismatch):
    """The sender's bit period is off by ``mismatch``; bytes follow each other with no gap."""
    seed = 7
    rng = random.Random(seed)
    n = 24 if divisor < 20 else 6
    data = bytes(rng.getrandbits(8) for _ in range(n))
    got, pulses = _rx_sim(divisor, seed, mismatch=mismatch, data=data, gaps=False, p_stall=0.0)
    assert bytes(got) == data, f"seed={seed} mismatch={mismatch}"
    assert pulses == {"overrun": 0, "frame_error": 0}


@pytest.mark.parametrize("divisor", [4, 16])
def test_rx_overrun_and_frame_error(divisor):
    """Unread byte + new byte -> overrun pulse, first byte kept; a low stop bit -> frame error."""
    dut = UARTRx(divisor)
    pulses = {"overrun": 0, "frame_error": 0}
    got = []

    async def tb(ctx):
        await ctx.tick().repeat(3)
        phase = await drive_byte(ctx, dut.rx, 0xA5, divisor, 0.0)
        phase = await drive_byte(ctx, dut.rx, 0x5A, divisor, phase)   # dropped: nobody reads
        await ctx.tick().repeat(2 * divisor)
        assert pulses == {"overrun": 1, "frame_error": 0}
        got.append(await stream_get(ctx, dut.o_stream))
        phase = await drive_byte(ctx, dut.rx, 0x3C, divisor, phase, stop=0)
        ctx.set(dut.rx, 0)            # hold the line low (a break) for a while
        await ctx.tick().repeat(3 * divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        assert pulses == {"overrun": 1, "frame_error": 1}
        await drive_byte(ctx, dut.rx, 0x42, divisor, phase)
        got.append(await stream_get(ctx, dut.o_stream))
        await ctx.tick().repeat(12 * divisor)
        assert not ctx.get(dut.o_stream.valid)

    async def monitor(ctx):
        async for _, _, overrun, frame_error in ctx.tick().sample(dut.overrun, dut.frame_error):
            pulses["overrun"] += overrun
            pulses["frame_error"] += frame_error

    run(dut, tb, background=[monitor], name=f"uart_rx_errors_{divisor}")
    assert got == [0xA5, 0x42]
    assert pulses == {"overrun": 1, "frame_error": 1}


async def sample_byte(ctx, pin, divisor, cycle=None):
    """Wait for a start bit on ``pin``, sample 8N1 at mid-bit; return (byte, stop bit).

    If ``cycle`` (a one-item list counting clock cycles) is given, the cycle the start bit was
    first seen is appended to it.
    """
    while ctx.get(pin):
        await ctx.tick()
    start = None if cycle is None else cycle[0]
    await ctx.tick().repeat(divisor // 2)
    assert ctx.get(pin) == 0, "start bit too short"
    byte = 0
    for n in range(8):
        await ctx.tick().repeat(divisor)
        byte |= ctx.get(pin) << n
    await ctx.tick().repeat(divisor)
    return byte, ctx.get(pin), start


def _tx_sim(divisor, seed, data, p_stall):
    """Send ``data`` through UARTTx; check the line; return the cycle each start bit began."""
    rng = random.Random(seed)
    dut = UARTTx(divisor)
    got, starts = [], []
    cycle = [0]

    async def source(ctx):
        for byte in data:
            await stream_put(ctx, dut.i_stream, byte, rng=rng, p_stall=p_stall)

    async def sink(ctx):
        assert ctx.get(dut.tx) == 1, "tx must idle high"
        for _ in data:
            byte, stop, start = await sample_byte(ctx, dut.tx, divisor, cycle)
            assert stop == 1, f"seed={seed}: stop bit low"
            got.append(byte)
            starts.append(start)
            # Stop sampling half-way through the stop bit; the next start may follow directly.
            await ctx.tick().repeat(divisor // 2 - 1)
        await ctx.tick().repeat(12 * divisor)
        assert ctx.get(dut.tx) == 1, "tx must return to idle"

    async def counter(ctx):
        async for _ in ctx.tick():
            cycle[0] += 1

    run(dut, source, sink, background=[counter], name=f"uart_tx_{divisor}_{seed}",
        deadline_cycles=(len(data) + 4) * 14 * divisor + 2000)
    assert bytes(got) == data, f"seed={seed}"
    return starts


@pytest.mark.parametrize("divisor", DIVISORS)
@pytest.mark.parametrize("seed", range(2))
def test_tx_random(divisor, seed):
    rng = random.Random(seed)
    n = 32 if divisor < 20 else 8
    data = bytes(rng.getrandbits(8) for _ in range(n))
    _tx_sim(divisor, seed, data, p_stall=0.5)


@pytest.mark.parametrize("divisor", DIVISORS)
def test_tx_back_to_back(divisor):
    """With data always waiting, each start bit follows the previous stop bit directly."""
    data = bytes(range(0xF0, 0x100)) if divisor < 20 else b"\x00\xff\x55\xaa"
    starts = _tx_sim(divisor, 0, data, p_stall=0.0)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps == [10 * divisor] * (len(data) - 1), gaps


@pytest.mark.parametrize("divisor", DIVISORS)
def test_tx_to_rx_loop(divisor):
    """UARTTx's pin feeds UARTRx: the byte stream comes through with back-pressure on both sides."""
    from amaranth.hdl import Module
    seed = 3
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(24 if divisor < 20 else 6))
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def source(ctx):
        for byte in data:
            await stream_put(ctx, tx.i_stream, byte, rng=rng, p_stall=0.2)

    async def sink(ctx):
        for _ in data:
            got.append(await stream_get(ctx, rx.o_stream, rng=rng, p_stall=0.2))
        await ctx.tick().repeat(12 * divisor)
        assert not ctx.get(rx.o_stream.valid)
        assert not ctx.get(tx.i_stream.valid)

    run(m, source, sink, name=f"uart_loop_{divisor}",
        deadline_cycles=(len(data) + 4) * 14 * divisor + 2000)
    assert bytes(got) == data, f"seed={seed}"
