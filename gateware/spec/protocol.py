"""The wire protocol between host and board: the single definition both sides use.

A *frame* on the wire is ``COBS(header || payload || crc) || 0x00``:

* ``header`` is two bytes: the opcode, then an 8-bit sequence number chosen by the sender.
  A reply carries the request's sequence number and the request opcode with bit 7 set
  (``reply_opcode``); an error reply carries opcode ``ERROR`` and the request's sequence number.
* Multi-byte fields are big-endian (network order), as in the tables of ``docs/protocol.md``.
* ``crc`` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) over
  header and payload, sent most significant byte first.

Why CRC-16/CCITT-FALSE and not CRC-32: every frame here is at most ``MAX_FRAME`` bytes (under
2 kbit), where the 0x1021 polynomial already has Hamming distance 4 (it detects every 1-, 2- and
3-bit error and every burst up to 16 bits), and the UART adds its own start/stop framing. CRC-32
would double the check overhead on a link whose bandwidth carries the detector event stream, and
cost twice the logic in a 5k-LUT iCE40, for no gain in guaranteed detection at these lengths.

How the device answers (the gateware and the behavioural model ``hil.model`` both follow this):

* A decoded frame shorter than ``HEADER_LEN + CRC_LEN`` or longer than ``MAX_FRAME``, or with bad
  COBS, is dropped and counted in ``link.cobs_errors``; one with a bad CRC is dropped and counted
  in ``link.crc_errors``. Neither is ever executed or answered: the host times out and retries.
  An empty frame (a 0x00 right after another) is no error: a host may send a lone 0x00 to flush
  a receiver that saw garbage.
* Every CRC-valid frame counts in ``link.rx_frames`` and gets exactly one reply frame: the
  opcode's reply, or ``ERROR`` (counted in ``link.bad_requests``). Payload lengths must be exact
  (``BAD_LENGTH``); an opcode that is not a request is ``BAD_OPCODE``.
* ``READ``/``BURST_READ`` of an address with no register is ``BAD_ADDRESS`` (a burst is checked
  whole before anything is sent; the detail is the first unmapped address). A ``W1P`` register
  reads as 0. ``WRITE`` to a read-only register is ``READ_ONLY``.
* ``STREAM_H2D`` takes all of its data or none: with less room than data it answers
  ``STREAM_FULL`` (detail: free bytes). Empty data is a legal query of the free space. A
  channel this image does not serve, or one that is disabled (``LOOPBACK`` while
  ``core.control.loopback`` is 0), is ``BAD_CHANNEL``.
* Retries are safe: the device remembers the last CRC-valid frame it received. When the very
  next frame has the same opcode, sequence number and CRC, is a ``WRITE`` or ``STREAM_H2D``, and
  the first one was carried out (not answered with ``ERROR``), it is not carried out again; the
  device sends the reply again (for ``STREAM_H2D``, the count it accepted the first time and the
  room it has now). A retry still counts in ``link.rx_frames``; a request that was answered with
  ``ERROR`` had no effect, so its retry is simply executed (and counted) again. The host numbers every new request with the
  next sequence number and resends a request unchanged, so a retry is never mistaken for new work.
* Device-to-host stream frames are sent whenever the transmitter is free, interleaved with replies
  at frame boundaries; their boundaries carry no meaning (a stream is a byte stream), and their
  sequence numbers count each channel's frames so a lost frame shows as a gap.

COBS (consistent overhead byte stuffing) keeps 0x00 out of the encoded frame, so a 0x00 always
marks a frame boundary: a receiver that joins mid-stream, or sees garbage, resynchronises at the
next 0x00. Each frame costs at most ``1 + ceil(n / 254)`` bytes of stuffing plus the delimiter.
"""

from amaranth.lib import enum

__all__ = [
    "PROTOCOL_VERSION", "CRC_WIDTH", "CRC_POLY", "CRC_INIT", "crc16",
    "HEADER_LEN", "CRC_LEN", "MAX_PAYLOAD", "MAX_FRAME", "MAX_ENCODED",
    "MAX_BURST", "ADDR_BYTES", "WORD_BYTES",
    "Opcode", "ErrorCode", "StreamChannel", "reply_opcode",
    "UART_BITS_PER_BYTE",
]

#: Bumped when a frame layout or opcode changes incompatibly; the host refuses other versions.
PROTOCOL_VERSION = 1

CRC_WIDTH = 16
CRC_POLY = 0x1021
CRC_INIT = 0xFFFF

#: Bytes of header (opcode, sequence number) and of CRC in every frame.
HEADER_LEN = 2
CRC_LEN = CRC_WIDTH // 8
#: Register addresses are 16-bit word addresses; register values are 32-bit words.
ADDR_BYTES = 2
WORD_BYTES = 4
#: Largest payload in one frame, in bytes. 248 + header + CRC = 252 bytes, so a frame's COBS
#: encoding never needs more than one code byte per 254 data bytes (one extra byte in all).
MAX_PAYLOAD = 248
MAX_FRAME = HEADER_LEN + MAX_PAYLOAD + CRC_LEN
#: Longest frame on the wire: COBS adds one byte (MAX_FRAME < 254), plus the 0x00 delimiter.
MAX_ENCODED = MAX_FRAME + 2
#: Most registers one BURST_READ may return: address, count and 4 bytes per word fit a payload.
MAX_BURST = (MAX_PAYLOAD - ADDR_BYTES - 1) // WORD_BYTES

#: A UART byte is a start bit, 8 data bits and a stop bit.
UART_BITS_PER_BYTE = 10


class Opcode(enum.Enum, shape=8):
    """Frame opcodes. Requests have bit 7 clear; a reply is its request's opcode | 0x80."""
    #: ``addr:u16`` -> reply ``addr:u16 value:u32``
    READ = 0x01
    #: ``addr:u16 value:u32`` -> reply ``addr:u16``
    WRITE = 0x02
    #: ``addr:u16 count:u8`` (1..MAX_BURST, incrementing addresses) -> reply ``addr:u16 count:u8 value:u32 * count``
    BURST_READ = 0x03
    #: Host to device stream: ``channel:u8 data:u8*`` -> reply ``channel:u8 accepted:u16 free:u16``
    STREAM_H2D = 0x10
    #: Device to host stream, unsolicited: ``channel:u8 data:u8*``; the frame's sequence number counts
    #: the channel's frames modulo 256, so the host sees a lost frame as a gap.
    STREAM_D2H = 0x11
    #: Reply to READ (``READ | 0x80``, see ``reply_opcode``).
    READ_REPLY = 0x81
    #: Reply to WRITE.
    WRITE_REPLY = 0x82
    #: Reply to BURST_READ.
    BURST_READ_REPLY = 0x83
    #: Reply to STREAM_H2D: how many bytes were taken and how many more fit.
    STREAM_H2D_REPLY = 0x90
    #: ``request_opcode:u8 code:u8 detail:u16`` (see ErrorCode); sequence number is the request's.
    ERROR = 0xFF


def reply_opcode(opcode):
    """Return the reply opcode for a request opcode."""
    return Opcode(Opcode(opcode).value | 0x80)


class ErrorCode(enum.Enum, shape=8):
    """Why the device refused a well-formed (CRC-valid) request; ``detail`` is said per code."""
    #: The opcode is not a request this gateware serves. detail: 0.
    BAD_OPCODE = 0x01
    #: The payload length does not fit the opcode. detail: the length received.
    BAD_LENGTH = 0x02
    #: No register at this address (or a burst runs past the map). detail: the address.
    BAD_ADDRESS = 0x03
    #: A write to a read-only register. detail: the address.
    READ_ONLY = 0x04
    #: A burst count of 0 or over MAX_BURST. detail: the count.
    BAD_COUNT = 0x05
    #: No such stream channel in this gateware. detail: the channel.
    BAD_CHANNEL = 0x06
    #: The stream's FIFO has less room than the frame's data; nothing was taken. detail: free bytes.
    STREAM_FULL = 0x07


class StreamChannel(enum.Enum, shape=8):
    """Stream channels multiplexed on the link, in either direction."""
    #: Host->device bytes come back unchanged as device->host frames; link bring-up and tests.
    LOOPBACK = 0x00
    #: Bob: detector event records, device to host (tagger issue).
    EVENTS = 0x01
    #: Alice: per-slot choices, host to device (modulator issue).
    CHOICES = 0x02
    #: Alice: underflow and status records, device to host (modulator issue).
    REPORTS = 0x03


def crc16(data, crc=CRC_INIT):
    """Return the CRC-16/CCITT-FALSE of ``data`` (bytes), continuing from ``crc``.

    Reference implementation (bitwise, for clarity); the host codec uses a table-driven one and
    the gateware its own, both tested against this and the catalogue check value 0x29B1 of
    ``b"123456789"``.
    """
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ CRC_POLY) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc
