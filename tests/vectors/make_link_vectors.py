"""Generate ``link_session.json``: the shared wire-protocol test vectors of the host link.

One ordered session from reset (a fresh board, an empty receiver), as a list of steps. Each step is
``{"request": hex, "reply": hex or null, "note": text}``: the exact bytes the host sends, and the
exact bytes the device must answer (``null``: no reply at all, the frame is dropped and counted).
The host tests replay it against ``hil.model`` over TCP; the gateware's cocotb test replays it
through the RTL link top. Both must produce the replies byte for byte.

Frames are built here from the spec alone, not from the host codec: the bitwise reference
``gateware.spec.protocol.crc16`` and the reference COBS of ``gateware.spec.cobs``. Expected replies
are written out from the rules in the ``gateware.spec.protocol`` docstring, and the expected link
counters at the end are tallied step by step below. Registers whose values differ between model and
gateware (cycles, clk_hz, git_hash, platform, status) are never read.

Conventions pinned by these vectors: a READ of ``link.rx_frames`` counts its own frame; a retried
WRITE (same opcode, sequence number and CRC as the request just executed) is answered with the same
reply and not executed again.

Regenerate with ``python tests/vectors/make_link_vectors.py`` (writes the JSON next to this file);
``tests/controller/test_vectors.py`` fails when the JSON is stale.
"""

import json
import struct
import sys
from pathlib import Path

from gateware.spec.cobs import cobs_decode, cobs_encode
from gateware.spec.protocol import (
    MAX_BURST, MAX_FRAME, PROTOCOL_VERSION, ErrorCode, Opcode, StreamChannel, crc16,
)
from gateware.spec.registers import DEVICE_ID, REGISTER_MAP

OUT = Path(__file__).with_name("link_session.json")


def frame(opcode, seq, payload=b"", *, flip_crc_bit=None):
    """Return the wire bytes of a frame (optionally with one CRC bit flipped)."""
    body = bytes((opcode, seq)) + payload
    crc = crc16(body)
    if flip_crc_bit is not None:
        crc ^= 1 << flip_crc_bit
    return cobs_encode(body + struct.pack(">H", crc)) + b"\x00"


def addr(path):
    return REGISTER_MAP.address(path)


def read(seq, a):
    return frame(Opcode.READ.value, seq, struct.pack(">H", a))


def read_reply(seq, a, value):
    return frame(Opcode.READ_REPLY.value, seq, struct.pack(">HI", a, value))


def error(seq, request_opcode, code, detail):
    return frame(Opcode.ERROR.value, seq, struct.pack(">BBH", request_opcode, code.value, detail))


class Session:
    """Builds the ordered steps and tallies the link counters the device must end with."""

    def __init__(self):
        self.steps = []
        self.seq = 0
        self.counts = {"rx_frames": 0, "crc_errors": 0, "cobs_errors": 0, "bad_requests": 0}

    def next_seq(self):
        seq, self.seq = self.seq, (self.seq + 1) & 0xFF
        return seq

    def step(self, request, reply, note, *, valid=True, bad=False, crc_error=False, cobs_error=False):
        self.counts["rx_frames"] += valid
        self.counts["bad_requests"] += bad
        self.counts["crc_errors"] += crc_error
        self.counts["cobs_errors"] += cobs_error
        self.steps.append({"request": request.hex(), "reply": None if reply is None else reply.hex(),
                           "note": note})

    def request(self, opcode, payload, reply_payload=None, note="", *, error_code=None, detail=0):
        """A CRC-valid request and its reply (the opcode's reply, or ERROR with code and detail)."""
        seq = self.next_seq()
        req = frame(opcode, seq, payload)
        if error_code is None:
            rep = frame(opcode | 0x80, seq, reply_payload)
        else:
            rep = error(seq, opcode, error_code, detail)
        self.step(req, rep, note, bad=error_code is not None)
        return req, rep


def build():
    s = Session()
    ver = REGISTER_MAP["core.version"].init
    R, W, B, H2D = (Opcode.READ.value, Opcode.WRITE.value, Opcode.BURST_READ.value,
                    Opcode.STREAM_H2D.value)

    a = addr("core.id")
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, DEVICE_ID), "READ core.id -> DEVICE_ID")
    a = addr("core.version")
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, ver), "READ core.version")
    a = addr("core.scratch")
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, 0), "READ core.scratch: 0 after reset")
    s.request(W, struct.pack(">HI", a, 0xC0FFEE42), struct.pack(">H", a), "WRITE core.scratch = 0xC0FFEE42")
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, 0xC0FFEE42), "READ core.scratch back")
    first, last = addr("core.id"), addr("core.version")
    n = last - first + 1
    s.request(B, struct.pack(">HB", first, n), struct.pack(">HB2I", first, n, DEVICE_ID, ver),
              "BURST_READ core.id..core.version")
    a = addr("core.command")
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, 0), "READ core.command: a W1P register reads 0")
    a = addr("core.control")
    s.request(W, struct.pack(">HI", a, 0xFFFFFFFF), struct.pack(">H", a),
              "WRITE core.control = 0xFFFFFFFF (enables loopback)")
    width = REGISTER_MAP["core.control"].width
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, (1 << width) - 1),
              f"READ core.control: only its {width} defined bits are stored")
    s.request(W, struct.pack(">HI", a, 0), struct.pack(">H", a), "WRITE core.control = 0 (loopback off)")

    # Requests the device refuses with ERROR.
    unmapped = next(x for x in range(0x10000) if REGISTER_MAP.at(x) is None)
    s.request(R, struct.pack(">H", unmapped), note=f"READ of unmapped 0x{unmapped:04X}",
              error_code=ErrorCode.BAD_ADDRESS, detail=unmapped)
    a = addr("core.id")
    s.request(W, struct.pack(">HI", a, 0x12345678), note="WRITE core.id: read-only",
              error_code=ErrorCode.READ_ONLY, detail=a)
    s.request(0x7E, b"\x00\x00", note="opcode 0x7E is no request", error_code=ErrorCode.BAD_OPCODE)
    s.request(Opcode.STREAM_D2H.value, b"\x00\x01\x02", note="STREAM_D2H is device-to-host only",
              error_code=ErrorCode.BAD_OPCODE)
    s.request(Opcode.READ_REPLY.value, b"\x00\x00", note="a reply opcode is no request",
              error_code=ErrorCode.BAD_OPCODE)
    s.request(R, b"\x00\x00\x00", note="READ with a 3-byte payload", error_code=ErrorCode.BAD_LENGTH,
              detail=3)
    s.request(W, struct.pack(">HH", addr("core.scratch"), 1), note="WRITE with a 4-byte payload",
              error_code=ErrorCode.BAD_LENGTH, detail=4)
    s.request(B, b"\x00\x00", note="BURST_READ with a 2-byte payload", error_code=ErrorCode.BAD_LENGTH,
              detail=2)
    s.request(H2D, b"", note="STREAM_H2D without a channel byte", error_code=ErrorCode.BAD_LENGTH,
              detail=0)
    s.request(B, struct.pack(">HB", 0, 0), note="BURST_READ count 0", error_code=ErrorCode.BAD_COUNT,
              detail=0)
    s.request(B, struct.pack(">HB", 0, MAX_BURST + 1), note=f"BURST_READ count MAX_BURST+1 = {MAX_BURST + 1}",
              error_code=ErrorCode.BAD_COUNT, detail=MAX_BURST + 1)
    last = addr("link.bad_requests")
    s.request(B, struct.pack(">HB", last, 2), note="BURST_READ running past the map",
              error_code=ErrorCode.BAD_ADDRESS, detail=last + 1)
    s.request(H2D, bytes((StreamChannel.LOOPBACK.value,)) + b"hello",
              note="STREAM_H2D to LOOPBACK while core.control.loopback = 0",
              error_code=ErrorCode.BAD_CHANNEL, detail=StreamChannel.LOOPBACK.value)
    s.request(H2D, bytes((StreamChannel.EVENTS.value,)), note="STREAM_H2D to EVENTS: not served by a LINK image",
              error_code=ErrorCode.BAD_CHANNEL, detail=StreamChannel.EVENTS.value)

    # A retried WRITE: identical bytes, answered again, not executed twice.
    a = addr("core.scratch")
    req, rep = s.request(W, struct.pack(">HI", a, 0x5A5A0001), struct.pack(">H", a),
                         "WRITE core.scratch = 0x5A5A0001")
    s.step(req, rep, "the same WRITE again (a retry): same reply, not executed again")
    s.request(R, struct.pack(">H", a), struct.pack(">HI", a, 0x5A5A0001), "READ core.scratch")

    # Frames the device drops without a reply.
    seq = s.next_seq()
    s.step(frame(R, seq, struct.pack(">H", addr("core.id")), flip_crc_bit=0), None,
           "READ core.id with one CRC bit flipped: dropped, counted in crc_errors",
           valid=False, crc_error=True)
    good = bytearray(frame(R, seq, struct.pack(">H", addr("core.id"))))
    good[0] = 0x7F   # the first code byte now points past the end of the frame
    try:
        cobs_decode(bytes(good[:-1]))
        raise AssertionError("the bad-COBS vector decodes; make it invalid")
    except ValueError:
        pass
    s.step(bytes(good), None, "bad COBS (first code byte 0x7F runs past the frame): dropped, cobs_errors",
           valid=False, cobs_error=True)
    short = bytes((R, seq, 0x00))
    s.step(cobs_encode(short) + b"\x00", None,
           "a frame of 3 decoded bytes (shorter than header + CRC): dropped, cobs_errors",
           valid=False, cobs_error=True)
    long_body = bytes((R, seq)) + bytes(range(1, MAX_FRAME - 2))   # MAX_FRAME + 1 bytes with CRC
    long_frame = long_body + struct.pack(">H", crc16(long_body))
    assert len(long_frame) == MAX_FRAME + 1
    s.step(cobs_encode(long_frame) + b"\x00", None,
           f"a CRC-valid frame of {MAX_FRAME + 1} bytes (over MAX_FRAME): dropped, cobs_errors",
           valid=False, cobs_error=True)
    garbage = bytes.fromhex("deadbeef") + b"\x00"
    s.step(garbage, None, "garbage bytes then 0x00: bad COBS, dropped, cobs_errors; the receiver "
           "resynchronises at the 0x00", valid=False, cobs_error=True)
    s.step(b"\x00\x00", None, "two lone 0x00 (empty frames): a legal flush, no reply, not counted",
           valid=False)
    a = addr("core.scratch")
    seq = s.next_seq()
    s.step(bytes.fromhex("1337") + b"\x00" + read(seq, a), read_reply(seq, a, 0x5A5A0001),
           "more garbage (one bad-COBS frame), then a valid READ core.scratch in the same write: answered",
           cobs_error=True)

    # The counters, read one by one; each READ counts itself in rx_frames before it is answered.
    for name in ("crc_errors", "cobs_errors", "rx_frames", "bad_requests"):
        seq = s.next_seq()
        a = addr(f"link.{name}")
        value = s.counts[name] + (name == "rx_frames")   # rx_frames includes this READ
        s.step(read(seq, a), read_reply(seq, a, value), f"READ link.{name} = {value}")

    return {
        "description": __doc__.split("\n\n")[0] + " See tests/vectors/make_link_vectors.py.",
        "generator": "tests/vectors/make_link_vectors.py",
        "protocol_version": PROTOCOL_VERSION,
        "format": "steps in order from reset; request and reply are hex wire bytes (COBS frame and "
                  "0x00 delimiter); reply null means the device sends nothing",
        "counters_after_session": dict(s.counts),
        "steps": s.steps,
    }


def render():
    """Return the JSON text of the vectors."""
    return json.dumps(build(), indent=1) + "\n"


def main(argv=None):
    OUT.write_text(render())
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
