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
    MAX_BURST, ErrorCode, Opcode, StreamChannel, reply_opcode,
)

from gateware.spec.registers import REGISTER_MAP

from .codec import FrameDecoder, encode_frame
from .errors import CRCErrors, DeviceError, NoResponse, ProtocolError
from .stream import RX_FRAMES_ADDR, STREAM_CHUNK, WindowedWrite
from .transport import DEFAULT_BAUD, Transport, open_transport

__all__ = ["LinkClient", "LinkStats", "STREAM_CHUNK", "DEFAULT_WINDOW"]

logger = logging.getLogger(__name__)

#: STREAM_H2D frames ``stream_write`` keeps in flight by default: 16 full frames are about 4 kB,
#: 3.5 ms at 12 Mbaud, enough to cover a host's reply latency of a few ms (``qkdnode bench
#: stream``). The room the device reports still bounds the bytes in flight (LOOPBACK's 512-byte
#: FIFO allows two frames and a piece, which also keeps the gateware's 512-byte RX FIFO safe).
DEFAULT_WINDOW = 16

#: A write here may clear the link counters (core.command.clear_counters).
_COMMAND_ADDR = REGISTER_MAP.address("core.command")

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
    #: STREAM_H2D frames sent (first sends, resends and free-space queries; not retries).
    stream_frames: int = 0
    #: Host-to-device stream bytes the device took.
    stream_bytes: int = 0
    #: Waits for a reply with stream data ready because ``window`` frames were in flight.
    window_stalls: int = 0
    #: Waits with stream data ready because the room the device reported was used up.
    room_stalls: int = 0
    #: Windows drained and settled after a lost, refused or unanswered frame.
    stream_recoveries: int = 0
    #: Windows where the device took a frame after one it did not take (out of order).
    stream_reordered: int = 0
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
    repeat the last request of the previous one). ``window`` is how many STREAM_H2D frames
    ``stream_write`` keeps in flight (1: one request at a time).
    """

    def __init__(self, target, *, timeout=0.25, retries=3, baudrate=DEFAULT_BAUD, first_seq=None,
                 window=DEFAULT_WINDOW):
        if int(window) < 1:
            raise ValueError(f"window {window}: at least one frame must be in flight")
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
        self.window = int(window)
        self._streams = defaultdict(bytearray)
        self._stream_seq = {}
        #: Per host-to-device channel: room the device last reported, less what was sent since.
        self._stream_free = {}
        #: [link.rx_frames at a read, frames known to have arrived since], or None when unknown.
        self._rx_ref = None

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
        channel = _channel(channel)
        free = self._stream_frame(channel, b"")[1]
        self._stream_free[channel] = free
        return free

    def stream_write(self, channel, data, *, stall_timeout=None, window=None, reorder=False):
        """Send ``data`` (bytes) on host-to-device stream ``channel``, all of it, exactly once.

        Keeps up to ``window`` frames (default: the client's ``window``) of at most STREAM_CHUNK
        bytes in flight, never more bytes than the room the device last reported less what was
        sent since, so nothing is refused; waits (draining device-to-host frames) while the FIFO
        is full. Lost frames and replies are recovered as ``controller.link.stream`` explains.
        Returns the (offset, length) ranges of ``data`` in the order the device took them: in
        order, unless ``reorder`` allowed a frame lost mid-window to be sent after the ones that
        followed it (without ``reorder`` that raises StreamOrderError). Raises StreamStalled if
        no byte is taken for ``stall_timeout`` s (default: the retry budget), StreamUncertain if
        the device's counters cannot tell which unanswered frames it took.
        """
        channel = _channel(channel)
        stall_timeout = self.timeout * (self.retries + 1) if stall_timeout is None else stall_timeout
        window = self.window if window is None else window
        return WindowedWrite(self, channel, data, window=window, stall_timeout=stall_timeout,
                             reorder=reorder).run()

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

    # -- the device's frame count, for settling unanswered stream frames --------------------------

    def _read_rx_frames(self, reference=False):
        """Read link.rx_frames; return (value, retries it took). ``reference``: keep it as the
        reference count."""
        retries = self.stats.retries
        value = self.read(RX_FRAMES_ADDR)
        retried = self.stats.retries - retries
        if reference:
            self._rx_ref = [value, 0]
        return value, retried

    def _rx_arrived(self):
        """Count one frame known to have reached the device since the reference count."""
        if self._rx_ref is not None:
            self._rx_ref[1] += 1

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

    def _next_seq(self):
        seq = self._seq
        self._seq = (seq + 1) & 0xFF
        return seq

    def _transact(self, opcode, payload, what):
        """Send a request until its reply arrives; return the reply payload or raise."""
        seq = self._next_seq()
        if opcode == _WRITE and payload[:2] == struct.pack(">H", _COMMAND_ADDR):
            self._rx_ref = None               # may clear link.rx_frames
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
                    if attempt:
                        self._rx_ref = None   # did the unanswered attempts arrive? unknown
                    else:
                        self._rx_arrived()
                    if frame.opcode == expected:
                        return frame.payload
                    return self._raise_error(frame.payload, opcode, what)
        self._rx_ref = None
        corrupt = self.decoder.errors - errors_before
        if corrupt:
            raise CRCErrors(self.url, what, corrupt, attempts, self.transport.baudrate)
        raise NoResponse(self.url, what, self.timeout, attempts, self.transport.baudrate)

    def _raise_error(self, payload, opcode, what):
        if len(payload) != 4:
            raise ProtocolError(self.url, what, f"ERROR reply of {len(payload)} bytes, expected 4")
        req, code, detail = struct.unpack(">BBH", payload)
        raise DeviceError(code, detail, req, what)
