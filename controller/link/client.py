"""The link client: numbered requests with timeouts and safe retries, and stream channels.

``LinkClient`` speaks the frame protocol of ``gateware.spec.protocol`` over a Transport. It knows
addresses and channels as numbers; ``controller.device`` adds register names on top.
"""

import logging
import os
import struct
import time
from collections import defaultdict
from dataclasses import dataclass, field

from gateware.spec.protocol import (
    MAX_BURST, MAX_PAYLOAD, ErrorCode, Opcode, StreamChannel, reply_opcode,
)

from .codec import FrameDecoder, encode_frame
from .errors import CRCErrors, DeviceError, NoResponse, ProtocolError, StreamStalled
from .transport import DEFAULT_BAUD, Transport, open_transport

__all__ = ["LinkClient", "LinkStats", "STREAM_CHUNK"]

logger = logging.getLogger(__name__)

#: Most stream data bytes one STREAM_H2D frame carries (the payload also holds the channel byte).
STREAM_CHUNK = MAX_PAYLOAD - 1

_READ = Opcode.READ.value
_WRITE = Opcode.WRITE.value
_BURST = Opcode.BURST_READ.value
_H2D = Opcode.STREAM_H2D.value
_D2H = Opcode.STREAM_D2H.value
_ERROR = Opcode.ERROR.value
_STREAM_FULL = ErrorCode.STREAM_FULL.value


@dataclass
class LinkStats:
    """What the client saw on the link since it was opened (counts of frames and events)."""
    requests: int = 0
    retries: int = 0
    #: Frames whose sequence number or opcode matched no outstanding request (late replies).
    stale_frames: int = 0
    #: Per stream channel: discontinuities in the device's stream sequence numbers (the first frame
    #: the client hears on a channel sets the reference, so a loss before it cannot show).
    stream_gaps: dict = field(default_factory=lambda: defaultdict(int))
    #: Per stream channel: device-to-host frames missing, from the sizes of the gaps.
    stream_lost_frames: dict = field(default_factory=lambda: defaultdict(int))


def _channel(channel):
    return channel.value if isinstance(channel, StreamChannel) else int(channel)


class LinkClient:
    """Talk to one board over a byte stream.

    ``target`` is a link URL (``/dev/ttyUSB1``, ``socket://HOST:PORT``, ``loop://``) or an open
    Transport. ``timeout`` is how long to wait for each reply, in seconds; a request is sent at most
    ``1 + retries`` times, each time with identical bytes, so the device can tell a retry from new
    work. ``first_seq`` fixes the first sequence number (default: random, so a new session does not
    repeat the last request of the previous one).
    """

    def __init__(self, target, *, timeout=0.25, retries=3, baudrate=DEFAULT_BAUD, first_seq=None):
        if isinstance(target, Transport):
            self.transport = target
        else:
            self.transport = open_transport(target, baudrate=baudrate, timeout=timeout)
        self.url = self.transport.url
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.decoder = FrameDecoder()
        self.stats = LinkStats()
        self._seq = os.urandom(1)[0] if first_seq is None else first_seq & 0xFF
        self._streams = defaultdict(bytearray)
        self._stream_seq = {}

    # -- life cycle -------------------------------------------------------------------------------

    def close(self):
        """Close the transport."""
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def crc_errors(self):
        """Return the number of received frames dropped for a bad CRC."""
        return self.decoder.crc_errors

    @property
    def cobs_errors(self):
        """Return the number of received frames dropped for bad framing."""
        return self.decoder.cobs_errors

    # -- requests ---------------------------------------------------------------------------------

    def read(self, addr):
        """Return the 32-bit value of the register at word address ``addr``."""
        what = f"READ 0x{addr:04X}"
        payload = self._transact(_READ, struct.pack(">H", addr), what)
        if len(payload) != 6 or payload[:2] != struct.pack(">H", addr):
            raise ProtocolError(self.url, what, f"expected addr:u16 value:u32 for 0x{addr:04X}, "
                                                f"got {payload.hex()}")
        return struct.unpack_from(">I", payload, 2)[0]

    def write(self, addr, value):
        """Write the 32-bit ``value`` to the register at word address ``addr``."""
        if not 0 <= value <= 0xFFFF_FFFF:
            raise ValueError(f"register value {value} does not fit 32 bits (0..0xFFFFFFFF)")
        what = f"WRITE 0x{addr:04X} = 0x{value:08X}"
        payload = self._transact(_WRITE, struct.pack(">HI", addr, value), what)
        if payload != struct.pack(">H", addr):
            raise ProtocolError(self.url, what, f"expected addr:u16 0x{addr:04X}, got {payload.hex()}")

    def burst_read(self, addr, count):
        """Return the values of ``count`` registers from word address ``addr`` up, as a list.

        Reads of more than MAX_BURST registers are split into several bursts.
        """
        if count < 1:
            raise ValueError(f"burst count {count}: read at least one register")
        values = []
        while count:
            n = min(count, MAX_BURST)
            what = f"BURST_READ 0x{addr:04X} x{n}"
            payload = self._transact(_BURST, struct.pack(">HB", addr, n), what)
            if len(payload) != 3 + 4 * n or payload[:3] != struct.pack(">HB", addr, n):
                raise ProtocolError(self.url, what, f"expected addr, count {n} and {n} words, "
                                                    f"got {len(payload)} bytes")
            values.extend(struct.unpack_from(f">{n}I", payload, 3))
            addr += n
            count -= n
        return values

    def stream_query(self, channel):
        """Return the free bytes in host-to-device stream ``channel``'s FIFO (an empty STREAM_H2D)."""
        return self._stream_frame(_channel(channel), b"")[1]

    def stream_write(self, channel, data, *, stall_timeout=None):
        """Send ``data`` (bytes) on host-to-device stream ``channel``, all of it, in order.

        Splits the data into frames of at most STREAM_CHUNK bytes, sized to the free space the device
        reports, and waits (draining device-to-host frames meanwhile) while the FIFO is full. Raises
        StreamStalled if no byte is taken for ``stall_timeout`` s (default: the retry budget).
        """
        channel = _channel(channel)
        data = memoryview(bytes(data))
        stall_timeout = self.timeout * (self.retries + 1) if stall_timeout is None else stall_timeout
        free = STREAM_CHUNK
        sent = 0
        last_progress = time.monotonic()
        while sent < len(data):
            n = min(len(data) - sent, STREAM_CHUNK, free)
            if n == 0:
                if time.monotonic() - last_progress > stall_timeout:
                    raise StreamStalled(self.url, channel, sent, len(data), stall_timeout)
                self._pump(min(self.timeout, 0.005))
                accepted, free = self._stream_frame(channel, b"")
                continue
            accepted, free = self._stream_frame(channel, data[sent:sent + n])
            if accepted:
                sent += accepted
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > stall_timeout:
                raise StreamStalled(self.url, channel, sent, len(data), stall_timeout)

    def _stream_frame(self, channel, chunk):
        """Send one STREAM_H2D frame; return (accepted, free), with STREAM_FULL as (0, free)."""
        what = f"STREAM_H2D channel {channel} ({len(chunk)} bytes)"
        try:
            payload = self._transact(_H2D, bytes((channel,)) + bytes(chunk), what)
        except DeviceError as exc:
            if exc.code == _STREAM_FULL:
                return 0, exc.detail
            raise
        if len(payload) != 5 or payload[0] != channel:
            raise ProtocolError(self.url, what, f"expected channel:u8 accepted:u16 free:u16, "
                                                f"got {payload.hex()}")
        accepted, free = struct.unpack_from(">HH", payload, 1)
        if accepted not in (0, len(chunk)):
            raise ProtocolError(self.url, what, f"device took {accepted} of {len(chunk)} bytes; "
                                                f"a stream frame is taken whole or not at all")
        return accepted, free

    # -- device-to-host streams -------------------------------------------------------------------

    def stream_read(self, channel, size=None, timeout=None):
        """Return bytes received on device-to-host stream ``channel``.

        With ``size``, wait up to ``timeout`` s (default: the reply timeout) until that many bytes
        are queued and return at most ``size``; without, return what is queued after one poll.
        """
        channel = _channel(channel)
        queue = self._streams[channel]
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self._pump(0)
        while size is not None and len(queue) < size:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._pump(left)
        n = len(queue) if size is None else min(size, len(queue))
        out = bytes(queue[:n])
        del queue[:n]
        return out

    def stream_pending(self, channel):
        """Return how many bytes of device-to-host stream ``channel`` are queued, unread."""
        return len(self._streams[_channel(channel)])

    def _on_stream(self, frame):
        if not frame.payload:
            self.stats.stale_frames += 1
            return
        channel = frame.payload[0]
        last = self._stream_seq.get(channel)
        if last is not None and frame.seq != (last + 1) & 0xFF:
            lost = (frame.seq - last - 1) & 0xFF
            self.stats.stream_gaps[channel] += 1
            self.stats.stream_lost_frames[channel] += lost
            logger.warning("stream channel %d: %d frame(s) lost (sequence %d after %d)",
                           channel, lost, frame.seq, last)
        self._stream_seq[channel] = frame.seq
        self._streams[channel] += frame.payload[1:]

    # -- the request engine -----------------------------------------------------------------------

    def _pump(self, timeout):
        """Read what arrives within ``timeout`` s; queue stream frames; return the other frames."""
        chunk = self.transport.read(timeout)
        if not chunk:
            return []
        others = []
        for frame in self.decoder.feed(chunk):
            if frame.opcode == _D2H:
                self._on_stream(frame)
            else:
                others.append(frame)
        return others

    def _transact(self, opcode, payload, what):
        """Send a request until its reply arrives; return the reply payload or raise."""
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        wire = encode_frame(opcode, seq, payload)
        expected = reply_opcode(opcode).value
        errors_before = self.decoder.errors
        self.stats.requests += 1
        attempts = self.retries + 1
        for attempt in range(attempts):
            if attempt:
                self.stats.retries += 1
                logger.debug("%s: no reply in %g s, retry %d", what, self.timeout, attempt)
            self.transport.write(wire)
            deadline = time.monotonic() + self.timeout
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for frame in self._pump(left):
                    if frame.seq != seq or frame.opcode not in (expected, _ERROR):
                        self.stats.stale_frames += 1
                        continue
                    if frame.opcode == expected:
                        return frame.payload
                    return self._raise_error(frame.payload, opcode, what)
        corrupt = self.decoder.errors - errors_before
        if corrupt:
            raise CRCErrors(self.url, what, corrupt, attempts, self.transport.baudrate)
        raise NoResponse(self.url, what, self.timeout, attempts, self.transport.baudrate)

    def _raise_error(self, payload, opcode, what):
        if len(payload) != 4:
            raise ProtocolError(self.url, what, f"ERROR reply of {len(payload)} bytes, expected 4")
        req, code, detail = struct.unpack(">BBH", payload)
        raise DeviceError(code, detail, req, what)
