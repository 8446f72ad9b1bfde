"""The host frame codec: CRC, encoding, the streaming decoder, and its resynchronisation."""

import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.link.codec import FrameDecoder, Frame, crc16, decode_frame, encode_frame
from gateware.spec import protocol
from gateware.spec.cobs import cobs_decode, cobs_encode
from gateware.spec.protocol import MAX_ENCODED, MAX_FRAME, MAX_PAYLOAD

#: Deterministic property tests: the same examples on every run (derandomized), no deadline.
DETERMINISTIC = settings(derandomize=True, max_examples=150, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])

payloads = st.binary(max_size=MAX_PAYLOAD)
bytes8 = st.integers(0, 255)


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1 == protocol.crc16(b"123456789")


@DETERMINISTIC
@given(st.binary(max_size=600), st.integers(0, 0xFFFF))
def test_crc_matches_spec_reference(data, init):
    assert crc16(data, init) == protocol.crc16(data, init)


def test_encode_layout():
    wire = encode_frame(0x01, 0x07, b"\x00\x06")
    raw = cobs_decode(wire[:-1])
    assert wire[-1] == 0 and 0 not in wire[:-1]
    assert raw[:4] == b"\x01\x07\x00\x06"
    assert struct.unpack(">H", raw[4:])[0] == protocol.crc16(raw[:4])


def test_max_frame_fits_max_encoded():
    wire = encode_frame(0x11, 0, bytes(MAX_PAYLOAD))
    assert len(wire) <= MAX_ENCODED
    wire = encode_frame(0x11, 255, b"\xff" * MAX_PAYLOAD)
    assert len(wire) == MAX_ENCODED


def test_payload_too_long_is_refused():
    with pytest.raises(ValueError, match="MAX_PAYLOAD"):
        encode_frame(0x10, 0, bytes(MAX_PAYLOAD + 1))


@DETERMINISTIC
@given(bytes8, bytes8, payloads)
def test_round_trip(opcode, seq, payload):
    wire = encode_frame(opcode, seq, payload)
    assert decode_frame(wire[:-1]) == Frame(opcode, seq, payload)
    decoder = FrameDecoder()
    assert decoder.feed(wire) == [Frame(opcode, seq, payload)]
    assert decoder.errors == 0


frames_st = st.lists(st.tuples(bytes8, bytes8, payloads), min_size=1, max_size=8)


@DETERMINISTIC
@given(frames_st, st.data())
def test_chunking_does_not_matter(frames, data):
    wire = b"".join(encode_frame(*f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=20)))
    decoder = FrameDecoder()
    got = []
    for start, end in zip([0] + cuts, cuts + [len(wire)]):
        got += decoder.feed(wire[start:end])
    assert got == [Frame(*f) for f in frames]
    assert decoder.wire_bytes == len(wire)


@DETERMINISTIC
@given(st.binary(max_size=700), frames_st)
def test_resynchronises_after_garbage(garbage, frames):
    """After any garbage and a 0x00, every later frame is recovered; the garbage yields no frame
    unless it happens to hold a CRC-valid frame (counted either as a frame or as an error)."""
    decoder = FrameDecoder()
    junk = decoder.feed(garbage + b"\x00")
    wire = b"".join(encode_frame(*f) for f in frames)
    assert decoder.feed(wire) == [Frame(*f) for f in frames]
    segments = [seg for seg in garbage.split(b"\x00") if seg]  # empty frames are flushes
    assert len(junk) + decoder.errors == len(segments)


@DETERMINISTIC
@given(st.binary(min_size=1, max_size=300).filter(lambda b: 0 not in b), frames_st)
def test_garbage_without_delimiter_costs_only_the_next_frame(garbage, frames):
    decoder = FrameDecoder()
    wire = garbage + b"".join(encode_frame(*f) for f in frames)
    got = decoder.feed(wire)
    later = [Frame(*f) for f in frames[1:]]
    assert got[len(got) - len(later):] == later
    assert len(got) + decoder.errors == len(frames)


def test_error_classes():
    decoder = FrameDecoder()
    good = encode_frame(0x01, 3, b"\x00\x00")
    raw = bytearray(cobs_decode(good[:-1]))
    raw[-1] ^= 0x80
    decoder.feed(cobs_encode(bytes(raw)) + b"\x00")
    assert (decoder.crc_errors, decoder.cobs_errors) == (1, 0)
    decoder.feed(b"\x7f\x01\x02\x00")                         # code byte runs past the end
    decoder.feed(cobs_encode(b"\x01\x02\x03") + b"\x00")     # 3 bytes: too short
    decoder.feed(b"\x00")                                    # empty frame: a flush, no error
    body = bytes(range(1, MAX_FRAME))                         # MAX_FRAME + 1 with CRC
    decoder.feed(cobs_encode(body + crc16(body).to_bytes(2, "big")) + b"\x00")
    assert (decoder.crc_errors, decoder.cobs_errors) == (1, 3)
    assert decoder.feed(good) == [Frame(0x01, 3, b"\x00\x00")]


def test_overlong_input_is_bounded_and_counted_once():
    decoder = FrameDecoder()
    rng = random.Random(2)
    for _ in range(50):
        decoder.feed(bytes(rng.randrange(1, 256) for _ in range(100)))
        assert len(decoder._buf) <= MAX_ENCODED
    assert decoder.feed(b"\x00" + encode_frame(0x81, 1, b"ok")) == [Frame(0x81, 1, b"ok")]
    assert decoder.cobs_errors == 1 and decoder.crc_errors == 0


@pytest.mark.parametrize("bad", ["cobs", "crc"])
def test_decode_frame_says_why(bad):
    wire = bytearray(encode_frame(0x02, 9, b"abcdef")[:-1])
    if bad == "cobs":
        wire[0] = 0x30
    else:
        wire[3] ^= 0x01
    with pytest.raises(ValueError, match=f"^{bad}"):
        decode_frame(bytes(wire))
