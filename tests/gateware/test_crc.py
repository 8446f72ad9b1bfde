"""CRC16 core against the bitwise reference ``gateware.spec.protocol.crc16``."""

import random

import pytest

from gateware.cores.crc import CRC16
from gateware.spec.protocol import CRC_INIT, crc16
from gwsim import run


def test_check_value():
    """The catalogue check value of CRC-16/CCITT-FALSE, so the reference itself is right."""
    assert crc16(b"123456789") == 0x29B1


def _feed(messages, seed, clear_with_first):
    """Feed ``messages`` back to back (with random idle cycles); return the CRC after each."""
    rng = random.Random(seed)
    dut = CRC16()
    results = []

    async def tb(ctx):
        assert ctx.get(dut.crc) == CRC_INIT, "CRC must reset to CRC_INIT"
        for message in messages:
            if not clear_with_first or not message:
                ctx.set(dut.clear, 1)
                await ctx.tick()
                ctx.set(dut.clear, 0)
                assert ctx.get(dut.crc) == CRC_INIT
            for n, byte in enumerate(message):
                while rng.random() < 0.3:
                    await ctx.tick()  # idle cycles must not change the CRC
                ctx.set(dut.clear, clear_with_first and n == 0)
                ctx.set(dut.valid, 1)
                ctx.set(dut.data, byte)
                await ctx.tick()
                ctx.set(dut.valid, 0)
                ctx.set(dut.clear, 0)
            await ctx.tick()
            results.append(ctx.get(dut.crc))

    run(dut, tb, name=f"crc_{seed}")
    return results


def test_check_value_gateware():
    assert _feed([b"123456789"], seed=0, clear_with_first=False) == [0x29B1]


@pytest.mark.parametrize("clear_with_first", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_random_messages(seed, clear_with_first):
    rng = random.Random(seed)
    messages = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
                for _ in range(12)]
    messages.append(bytes([0x00] * 5) + bytes([0xFF] * 5))
    expected = [crc16(message) for message in messages]
    assert _feed(messages, seed, clear_with_first) == expected, f"seed={seed}"
