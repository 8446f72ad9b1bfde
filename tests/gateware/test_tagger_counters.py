"""The block-RAM counter file (``gateware.cores.tagger_counters``) against a Python count.

Random increments at full rate, clears at random moments, host reads during runs (never ahead of
the true count, never more than the documented lag behind) and after quiet periods (exact). The
seed is in the test id and in every failure message.
"""

import random

import pytest

from gateware.cores.tagger_counters import CounterFile

from gwsim import run


def _bursts(seed, n, max_inc, clocks):
    """Return a list (per clock) of increment lists, dense and sparse stretches mixed;
    ``max_inc`` is one bound or one per counter."""
    bounds = list(max_inc) if isinstance(max_inc, (list, tuple)) else [max_inc] * n
    rng = random.Random(seed)
    out, density = [], 0.5
    for c in range(clocks):
        if c % 97 == 0:
            density = rng.choice([0.0, 0.05, 0.5, 1.0])
        out.append([rng.randrange(bounds[k] + 1) if rng.random() < density else 0
                    for k in range(n)])
    return out


#: The tagger's bounds: 16 channel counters (1 a clock), then events, dropped events and markers,
#: frames, sync losses, sync acquired, no-sync (gateware.cores.tagger).
TAGGER_BOUNDS = (1,) * 16 + (2, 2, 2, 1, 1, 1, 4)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n, max_inc", [(23, 4), (3, 1), (23, TAGGER_BOUNDS)])
def test_counter_file_matches_count(seed, n, max_inc):
    dut = CounterFile(n, max_inc=max_inc)
    if not isinstance(max_inc, int):
        assert dut.pre_widths[0] < dut.pre_widths[-1]     # narrower where the bound is lower
    lag = 2 * n + 4
    rng = random.Random(seed * 1000 + n)
    plan = _bursts(seed, n, max_inc, 1200)
    clears = {rng.randrange(100, 1100) for _ in range(3)}
    checked = [0, 0]

    async def bench(ctx):
        counts = [0] * n            # true counts
        history = []                # counts after each clock since the last clear (lag bound)
        await ctx.tick()

        async def read(k):
            ctx.set(dut.r_addr, k)
            await ctx.tick()
            return ctx.get(dut.r_data)

        for c, incs in enumerate(plan):
            if c in clears:
                ctx.set(dut.clear, 1)
                for k in range(n):
                    ctx.set(dut.inc[k], incs[k])   # not counted: the clear clock
                await ctx.tick()
                ctx.set(dut.clear, 0)
                counts = [0] * n
                history = [list(counts)]
                # Reads right after a clear return 0, as the flip-flop counters did.
                for k in range(n):
                    ctx.set(dut.inc[k], 0)
                value = await read(rng.randrange(n))
                history.append(list(counts))
                assert value == 0, f"seed={seed}: {value} read just after clear"
                continue
            for k in range(n):
                ctx.set(dut.inc[k], incs[k])
            probe = rng.randrange(n)
            ctx.set(dut.r_addr, probe)
            await ctx.tick()
            before = counts[probe]             # the count the read was issued at
            counts = [(a + b) % 2**32 for a, b in zip(counts, incs)]
            history.append(list(counts))
            got = ctx.get(dut.r_data)          # the word read at the clock edge just taken
            floor = history[-1 - lag][probe] if len(history) > lag else 0
            assert floor <= got <= before, \
                f"seed={seed} clock {c}: counter {probe} reads {got}, true {before}, " \
                f"lag floor {floor}"
            checked[0] += 1
        # Quiet: every counter is exact once 2n+4 clocks have passed.
        for k in range(n):
            ctx.set(dut.inc[k], 0)
        await ctx.tick().repeat(lag)
        for k in range(n):
            value = await read(k)
            assert value == counts[k], f"seed={seed}: counter {k} reads {value}, true {counts[k]}"
            checked[1] += 1

    run(dut, bench, name=f"counters_{n}_{seed}", deadline_cycles=10_000)
    assert checked[0] > 1000 and checked[1] == n


def test_counter_file_refuses_bad_sizes():
    with pytest.raises(ValueError, match="needs >= 3"):
        CounterFile(2)
    with pytest.raises(ValueError, match="max_inc"):
        CounterFile(5, max_inc=0)
    with pytest.raises(ValueError, match="max_inc"):
        CounterFile(5, max_inc=[1, 2])
