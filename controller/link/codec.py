"""Frame codec of the host link: ``COBS(opcode, seq, payload, crc16) || 0x00`` (see gateware.spec.protocol).

``encode_frame`` builds one frame's wire bytes; ``FrameDecoder`` is fed byte chunks of any size and
returns the frames completed so far, dropping and counting corrupt ones, and resynchronising at the
next 0x00 after garbage. COBS is the spec's reference codec (``gateware.spec.cobs``); the CRC is
``binascii.crc_hqx`` (table-driven, in C: polynomial 0x1021, unreflected, no final XOR), which
started from 0xFFFF is exactly CRC-16/CCITT-FALSE. Over a frame *including* its CRC bytes it leaves
a residue of 0, which is how a frame is checked without slicing the CRC off.
"""

from binascii import crc_hqx
from typing import NamedTuple

from gateware.spec.cobs import cobs_decode, cobs_encode
from gateware.spec.protocol import CRC_INIT, CRC_LEN, HEADER_LEN, MAX_FRAME, MAX_PAYLOAD

__all__ = ["Frame", "crc16", "encode_frame", "decode_frame", "FrameDecoder", "MIN_FRAME",
           "MAX_ENCODED_BODY"]

#: Shortest decoded frame: header and CRC with an empty payload, in bytes.
MIN_FRAME = HEADER_LEN + CRC_LEN
#: Longest COBS-encoded frame without its 0x00 delimiter, in bytes.
MAX_ENCODED_BODY = MAX_FRAME + 1


class Frame(NamedTuple):
    """One decoded frame: ``opcode`` (int), sequence number ``seq`` (int) and ``payload`` (bytes)."""
    opcode: int
    seq: int
    payload: bytes


def crc16(data, crc=CRC_INIT):
    """Return the CRC-16/CCITT-FALSE of ``data`` (bytes-like), continuing from ``crc``."""
    return crc_hqx(data, crc)


def encode_frame(opcode, seq, payload=b""):
    """Return the wire bytes of one frame: COBS-encoded header, payload and CRC, then 0x00.

    ``opcode`` and ``seq`` are 0..255; ``payload`` is at most MAX_PAYLOAD bytes.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes is longer than MAX_PAYLOAD={MAX_PAYLOAD}")
    body = bytes((opcode, seq)) + bytes(payload)
    crc = crc_hqx(body, CRC_INIT)
    return cobs_encode(body + bytes((crc >> 8, crc & 0xFF))) + b"\x00"


def decode_frame(body):
    """Return the Frame that one encoded ``body`` (no delimiter) carries.

    Raises ``ValueError`` whose first word says why: ``"cobs"`` for bad COBS or a frame too short or
    too long, ``"crc"`` for a CRC mismatch.
    """
    if len(body) > MAX_ENCODED_BODY:
        raise ValueError(f"cobs: frame of {len(body)} encoded bytes is longer than {MAX_ENCODED_BODY}")
    try:
        raw = cobs_decode(body)
    except ValueError as exc:
        raise ValueError(f"cobs: {exc}") from None
    if not MIN_FRAME <= len(raw) <= MAX_FRAME:
        raise ValueError(f"cobs: frame of {len(raw)} bytes, expected {MIN_FRAME}..{MAX_FRAME}")
    if crc_hqx(raw, CRC_INIT):
        raise ValueError("crc: CRC mismatch")
    return Frame(raw[0], raw[1], raw[2:-CRC_LEN])


class FrameDecoder:
    """Split a byte stream into frames at 0x00 and decode them.

    ``feed(chunk)`` returns the list of frames the chunk completed. Corrupt frames are dropped and
    counted: ``crc_errors`` (bad CRC) and ``cobs_errors`` (bad COBS, shorter than MIN_FRAME or longer
    than MAX_FRAME decoded bytes), the same rules the device applies. Bytes beyond the longest legal
    frame are discarded at once (memory stays bounded) and the frame counts once, at its delimiter.
    ``frames`` counts the good frames and ``wire_bytes`` every byte fed.
    """

    def __init__(self):
        self._buf = bytearray()
        self._overlong = False
        self.frames = 0
        self.crc_errors = 0
        self.cobs_errors = 0
        self.wire_bytes = 0

    @property
    def errors(self):
        """Return the number of frames dropped as corrupt (CRC and COBS)."""
        return self.crc_errors + self.cobs_errors

    def reset(self):
        """Drop any partial frame (after reopening the port); counters are kept."""
        self._buf.clear()
        self._overlong = False

    def feed(self, chunk):
        """Consume ``chunk`` (bytes-like) and return the list of good Frames it completed."""
        self.wire_bytes += len(chunk)
        if 0 not in chunk:
            self._buf += chunk
            if len(self._buf) > MAX_ENCODED_BODY:
                self._buf.clear()
                self._overlong = True
            return []
        parts = (self._buf + chunk).split(b"\x00")
        tail = parts.pop()
        frames = []
        for body in parts:
            if self._overlong:
                self._overlong = False
                self.cobs_errors += 1
                continue
            frame = self._decode(body)
            if frame is not None:
                frames.append(frame)
        self._buf = bytearray(tail)
        if len(self._buf) > MAX_ENCODED_BODY:
            self._buf.clear()
            self._overlong = True
        return frames

    def _decode(self, body):
        if not body:
            return None  # a lone delimiter is a legal flush, not an error (see the spec)
        if not MIN_FRAME < len(body) <= MAX_ENCODED_BODY:
            self.cobs_errors += 1
            return None
        try:
            raw = cobs_decode(body)
        except ValueError:
            self.cobs_errors += 1
            return None
        if not MIN_FRAME <= len(raw) <= MAX_FRAME:
            self.cobs_errors += 1
            return None
        if crc_hqx(raw, CRC_INIT):
            self.crc_errors += 1
            return None
        self.frames += 1
        return Frame(raw[0], raw[1], bytes(raw[2:-CRC_LEN]))
