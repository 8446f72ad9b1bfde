"""COBS reference codec (hypothesis) and the COBSDecoder / COBSEncoder cores against it."""

import random

import pytest
from hypothesis import given, settings, strategies as st

from gateware.cores.cobs import COBSDecoder, COBSEncoder
from gateware.spec.cobs import cobs_decode, cobs_encode, cobs_max_encoded_len
from gateware.spec.protocol import MAX_FRAME
from gwsim import run, stream_get, stream_put


# --- reference codec -------------------------------------------------------------------------

@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.binary(max_size=1000))
def test_reference_round_trip(frame):
    encoded = cobs_encode(frame)
    assert 0 not in encoded
    assert len(encoded) <= cobs_max_encoded_len(len(frame))
    assert cobs_decode(encoded) == frame


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.binary(min_size=1, max_size=MAX_FRAME))
def test_reference_overhead_protocol_frames(frame):
    """A protocol frame (< 254 bytes) costs exactly one code byte."""
    assert len(cobs_encode(frame)) == len(frame) + 1


def test_reference_known_vectors():
    # Wikipedia's examples, including a frame ending on a full block.
    assert cobs_encode(b"") == b"\x01"
    assert cobs_encode(b"\x00") == b"\x01\x01"
    assert cobs_encode(b"\x00\x00") == b"\x01\x01\x01"
    assert cobs_encode(b"\x11\x22\x00\x33") == b"\x03\x11\x22\x02\x33"
    assert cobs_encode(b"\x11\x00\x00\x00") == b"\x02\x11\x01\x01\x01"
    run_254 = bytes(range(1, 255))
    assert cobs_encode(run_254) == b"\xff" + run_254
    assert cobs_encode(bytes(range(0, 255))) == b"\x01\xff" + run_254
    assert cobs_encode(bytes(range(1, 256))) == b"\xff" + run_254 + b"\x02\xff"
    # The redundant trailing 0x01 after a full block decodes the same.
    assert cobs_decode(b"\xff" + run_254 + b"\x01") == run_254


@pytest.mark.parametrize("bad, why", [
    (b"", "empty"),
    (b"\x03\x11", "truncated"),
    (b"\x02\x00", "0x00"),
    (b"\x00", "0x00"),
])
def test_reference_rejects_malformed(bad, why):
    with pytest.raises(ValueError, match=why):
        cobs_decode(bad)


# --- gateware ------------------------------------------------------------------------------

def _random_frame(rng, max_len):
    """Return a random frame, biased to zeros, runs without zeros, and block boundaries."""
    kind = rng.randrange(4)
    n = rng.choice([1, 2, 253, 254, 255, rng.randrange(1, max_len + 1)])
    n = min(n, max_len)
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(n))
    if kind == 1:
        return bytes(rng.randrange(1, 256) for _ in range(n))
    if kind == 2:
        return bytes(rng.choice([0, 0, rng.randrange(256)]) for _ in range(n))
    return bytes(0 for _ in range(n))


def _decode_sim(wire, expected_tokens, seed, max_len, p_stall=0.3):
    """Send ``wire`` bytes into a COBSDecoder; check the tokens it emits equal ``expected``."""
    rng = random.Random(seed)
    dut = COBSDecoder(max_len=max_len)
    got = []

    async def source(ctx):
        for byte in wire:
            await stream_put(ctx, dut.i_stream, byte, rng=rng, p_stall=p_stall)

    async def sink(ctx):
        for _ in expected_tokens:
            token = await stream_get(ctx, dut.o_stream, rng=rng, p_stall=p_stall)
            got.append((0 if token.end else token.data, token.end, token.error))
        # Nothing more may come out.
        ctx.set(dut.o_stream.ready, 1)
        for _ in range(10):
            await ctx.tick()
            assert not ctx.get(dut.o_stream.valid), f"seed={seed}: extra token after the last"

    run(dut, source, sink, name=f"cobs_dec_{seed}", deadline_cycles=50 * len(wire) + 1000)
    assert got == expected_tokens, f"seed={seed}"


def _tokens(frame, error=False):
    return [(b, 0, 0) for b in frame] + [(0, 1, int(error))]


@pytest.mark.parametrize("seed", range(4))
def test_decoder_random_frames(seed):
    rng = random.Random(seed)
    wire, expected = bytearray(), []
    for _ in range(6):
        frame = _random_frame(rng, 600)
        wire += cobs_encode(frame) + b"\x00"
        expected += _tokens(frame)
        if rng.random() < 0.3:
            wire += b"\x00" * rng.randrange(1, 3)  # flushes emit nothing
    _decode_sim(bytes(wire), expected, seed, max_len=600)


def test_decoder_malformed():
    """Each malformed frame ends in an error token and the next frame decodes cleanly."""
    good = b"\x12\x00\x34"
    wire = b"\x00"                      # leading flush: nothing
    wire += b"\x05\x11\x22\x00"          # delimiter inside a block
    expected = _tokens(b"\x11\x22", error=True)
    wire += cobs_encode(good) + b"\x00"
    expected += _tokens(good)
    wire += b"\x03\x11\x02\x33\x00"      # code 0x33 announces 50 bytes; only the delimiter follows
    expected += _tokens(b"\x11\x02\x00", error=True)
    wire += b"\x02\x11\x02\x33\x00"      # well formed: the implicit zero between the blocks
    expected += _tokens(b"\x11\x00\x33")
    wire += b"\x01\x00"                  # an empty frame (one empty block) is well formed
    expected += _tokens(b"")
    wire += b"\xff" + bytes(range(1, 255)) + b"\x01\x00"  # trailing 0x01 after a full block
    expected += _tokens(bytes(range(1, 255)))
    _decode_sim(wire, expected, seed=0, max_len=MAX_FRAME + 10)


@pytest.mark.parametrize("seed", range(3))
def test_decoder_oversize(seed):
    """A frame over max_len emits its first max_len bytes, then an error token."""
    rng = random.Random(seed)
    max_len = 20
    wire, expected = bytearray(), []
    for n in (max_len, max_len + 1, 3 * max_len, 5):
        frame = bytes(rng.choice([0, rng.randrange(1, 256)]) for _ in range(n))
        wire += cobs_encode(frame) + b"\x00"
        expected += _tokens(frame[:max_len], error=n > max_len)
    _decode_sim(bytes(wire), expected, seed, max_len=max_len)


def _encode_sim(frames, seed, p_stall=0.3):
    """Send ``frames`` through a COBSEncoder; return the wire bytes and the cycle the last came."""
    rng = random.Random(seed)
    dut = COBSEncoder()
    expected = b"".join(cobs_encode(frame) + b"\x00" for frame in frames)
    got = bytearray()
    cycles = [0]

    async def source(ctx):
        for frame in frames:
            for n, byte in enumerate(frame):
                await stream_put(ctx, dut.i_stream, {"data": byte, "last": n == len(frame) - 1},
                                 rng=rng, p_stall=p_stall)

    async def sink(ctx):
        for _ in expected:
            got.append(await stream_get(ctx, dut.o_stream, rng=rng, p_stall=p_stall))
        last_cycle = cycles[0]
        ctx.set(dut.o_stream.ready, 1)
        for _ in range(300):
            await ctx.tick()
            assert not ctx.get(dut.o_stream.valid), f"seed={seed}: extra byte after the last"
        cycles[:] = [last_cycle]

    async def counter(ctx):
        async for _ in ctx.tick():
            cycles[0] += 1

    run(dut, source, sink, background=[counter], name=f"cobs_enc_{seed}",
        deadline_cycles=20 * len(expected) + 2000)
    assert bytes(got) == expected, f"seed={seed}"
    return bytes(got), cycles[0]


@pytest.mark.parametrize("seed", range(4))
def test_encoder_random_frames(seed):
    rng = random.Random(seed)
    frames = [_random_frame(rng, 600) for _ in range(5)]
    frames.append(bytes(range(1, 255)))          # ends on a full block
    frames.append(bytes(range(1, 255)) + b"\x00")  # full block, then a zero at the end
    frames.append(b"\x00")
    _encode_sim(frames, seed)


def _count_blocks(wire):
    """Return the number of code bytes in ``wire`` (COBS frames with delimiters)."""
    blocks = index = 0
    while index < len(wire):
        if wire[index] == 0:
            index += 1
        else:
            blocks += 1
            index += wire[index]
    return blocks


@pytest.mark.parametrize("shape", ["short_frames", "long_frame", "zeros"])
def test_encoder_throughput(shape):
    """With a source and sink that never stall, and blocks that fill no slower than they drain,
    the output runs at one byte per cycle after the first block, plus at most 2 cycles a block."""
    rng = random.Random(1)
    if shape == "short_frames":
        frames = [bytes(rng.randrange(1, 256) for _ in range(40)) for _ in range(10)]
    elif shape == "long_frame":
        frames = [bytes(rng.randrange(1, 256) for _ in range(1000))]
    else:
        frames = [bytes(300)]
    wire, last_cycle = _encode_sim(frames, seed=1, p_stall=0.0)
    first_block = min(len(frames[0].split(b"\0")[0]), 254)
    blocks = _count_blocks(wire)
    assert last_cycle <= first_block + len(wire) + 2 * blocks + 4, \
        (last_cycle, first_block, len(wire), blocks)
