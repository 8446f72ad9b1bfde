"""Windowed host-to-device streaming: several STREAM_H2D frames in flight, and safe recovery.

``WindowedWrite`` is the engine behind ``LinkClient.stream_write``. It keeps up to ``window``
frames unanswered, never more data in flight than the room the device last reported (less what
was sent since), matches replies to frames by sequence number, and on any loss recovers without
ever applying a frame twice.

Why recovery needs care: the device's retry memory holds only the *last* CRC-valid frame
(``gateware.spec.protocol``), so only the newest frame sent may be retried blindly. With more
than one frame in flight, a frame whose reply never came was either lost on the way in (not
applied) or applied with its reply lost; and a lost frame in the middle of the window means the
device applied the frames after it first. On any error the engine therefore stops sending,
drains the window, and settles every frame's fate:

* a frame with a reply is applied (or refused, with ``STREAM_FULL``: not applied);
* if only the newest frame is unanswered, it is resent unchanged (the retry memory makes that
  safe);
* otherwise it reads ``link.rx_frames``, which counts every CRC-valid frame the device received,
  and compares it with the count at a reference point (read before the window opened): the
  difference says how many of the unanswered frames arrived. When that is none or all of them the
  fate of each is known; anything in between is ambiguous and raises ``StreamUncertain``.

Then it resends only what was not applied. If a frame that was not applied precedes one that was,
the device holds those bytes out of order: by default that raises ``StreamOrderError`` (typed,
with the ranges the device took in its order), because a byte stream cannot be reordered after
the fact; with ``reorder=True`` (for streams whose consumer only needs to know the order, like
Alice's random choices) the missing frames are sent later and ``stream_write`` returns the order.
"""

import struct
import time
from collections import deque

from gateware.spec.protocol import MAX_PAYLOAD, ErrorCode, Opcode, reply_opcode
from gateware.spec.registers import REGISTER_MAP

from .codec import encode_frame
from .errors import CRCErrors, DeviceError, NoResponse, ProtocolError, StreamOrderError, \
    StreamStalled, StreamUncertain

__all__ = ["STREAM_CHUNK", "WindowedWrite", "RX_FRAMES_ADDR"]

#: Most stream data bytes one STREAM_H2D frame carries (the payload also holds the channel byte).
STREAM_CHUNK = MAX_PAYLOAD - 1
#: Word address of ``link.rx_frames``, the device's count of CRC-valid frames received.
RX_FRAMES_ADDR = REGISTER_MAP.address("link.rx_frames")

_H2D = Opcode.STREAM_H2D.value
_H2D_REPLY = reply_opcode(Opcode.STREAM_H2D).value
_ERROR = Opcode.ERROR.value
_STREAM_FULL = ErrorCode.STREAM_FULL.value

_PENDING, _APPLIED, _REFUSED, _LOST = "pending", "applied", "refused", "lost"


class _Frame:
    """One STREAM_H2D frame in flight: its wire bytes and the data range it carries."""

    __slots__ = ("n", "seq", "wire", "offset", "length", "deadline", "status", "free")

    def __init__(self, n, seq, wire, offset, length, deadline):
        self.n = n                    # send order within this write
        self.seq = seq
        self.wire = wire
        self.offset = offset
        self.length = length          # data bytes; 0 for a free-space query
        self.deadline = deadline
        self.status = _PENDING
        self.free = None              # free bytes the reply reported


class WindowedWrite:
    """Send ``data`` on host-to-device stream ``channel`` of ``client`` with ``window`` frames in
    flight; ``run()`` returns the (offset, length) ranges of ``data`` in the order the device took
    them (one range per frame)."""

    def __init__(self, client, channel, data, *, window, stall_timeout, reorder):
        if window < 1:
            raise ValueError(f"window {window}: at least one frame must be in flight")
        self.client = client
        self.stats = client.stats
        self.channel = channel
        self.data = memoryview(bytes(data))
        self.window = int(window)
        self.stall_timeout = stall_timeout
        self.reorder = reorder
        self.cursor = 0                       # data before it was sent at least once
        self.resend = deque()                 # ranges to send again (not applied), in order
        self.pending = deque()                # _Frame, in send order
        self.delivered = []                   # ranges the device took, in its order
        self.done = 0                         # bytes the device took
        self.sent_frames = 0
        # room at the newest reply, or None; taken out of the client's memory until this write
        # ends well (after an error what the device holds is not known here)
        self.free = client._stream_free.pop(channel, None)
        self.free_n = -1                      # send order of the frame that reported it
        self.what = f"STREAM_H2D channel {channel}"
        self.done_at_recovery = 0             # bytes taken at the last recovery
        self.fruitless = 0                    # recoveries in a row with no byte taken
        self.errors_before = client.decoder.errors

    # -- the main loop ----------------------------------------------------------------------------

    def run(self):
        total = len(self.data)
        last_progress = time.monotonic()
        while self.done < total:
            self._fill()
            if not self.pending:
                # data left, nothing in flight, no room reported: wait a little and ask.
                if time.monotonic() - last_progress > self.stall_timeout:
                    raise StreamStalled(self.client.url, self.channel, self.done, total,
                                        self.stall_timeout)
                self.stats.room_stalls += 1
                for frame in self.client._pump(min(self.client.timeout, 0.005)):
                    self._on_reply(frame)
                self._send(self.cursor, 0)
            before = self.done
            self._wait()
            if self.done > before:
                last_progress = time.monotonic()
        self.client._stream_free[self.channel] = self._room()
        return self.delivered

    def _next_range(self):
        if self.resend:
            return self.resend[0]
        if self.cursor < len(self.data):
            return self.cursor, len(self.data) - self.cursor
        return None

    def _room(self):
        """Return the room the device has for sure, less what is in flight (None: unknown)."""
        if self.free is None:
            return None
        return self.free - sum(f.length for f in self.pending
                               if f.n > self.free_n and f.status in (_PENDING, _APPLIED))

    def _fill(self):
        """Send frames while the window and the device's reported room allow."""
        if (not self.pending and self.window > 1 and self.client._rx_ref is None
                and sum(r[1] for r in self.resend) + len(self.data) - self.cursor > STREAM_CHUNK):
            # more than one frame will be in flight: take the reference count recovery may need
            # (now, while nothing is in flight, so no reply is mistaken for a stale one)
            self.client._read_rx_frames(reference=True)
        while True:
            rng = self._next_range()
            if rng is None:
                return
            if len(self.pending) >= self.window:
                self.stats.window_stalls += 1
                return
            room = self._room()
            if room is None:
                if self.pending:
                    return                    # learn the room from the first reply first
                room = STREAM_CHUNK           # may be refused with STREAM_FULL: that says the room
            n = min(rng[1], STREAM_CHUNK, room)
            if n <= 0:
                if self.pending:
                    self.stats.room_stalls += 1
                return
            if self.pending and self.client._rx_ref is None:
                return                        # no reference count: one frame at a time
            self._send(rng[0], n)
            if self.resend:
                offset, length = self.resend.popleft()
                if length > n:
                    self.resend.appendleft((offset + n, length - n))
            else:
                self.cursor += n

    def _send(self, offset, n):
        client = self.client
        seq = client._next_seq()
        chunk = self.data[offset:offset + n]
        wire = encode_frame(_H2D, seq, bytes((self.channel,)) + bytes(chunk))
        frame = _Frame(self.sent_frames, seq, wire, offset, n, 0.0)
        self.sent_frames += 1
        client.transport.write(wire)
        frame.deadline = time.monotonic() + client.timeout
        self.pending.append(frame)
        self.stats.requests += 1
        self.stats.stream_frames += 1

    # -- replies ----------------------------------------------------------------------------------

    def _wait(self):
        """Wait for the oldest frame's reply; retire answered frames; recover from any loss."""
        head = self.pending[0]
        left = head.deadline - time.monotonic()
        if left > 0:
            for frame in self.client._pump(left):
                self._on_reply(frame)
        trouble = any(f.status == _REFUSED for f in self.pending)
        answered = [i for i, f in enumerate(self.pending) if f.status != _PENDING]
        if answered and any(f.status == _PENDING for f in list(self.pending)[:answered[-1]]):
            trouble = True                    # a newer frame answered: an older reply is lost
        if head.status == _PENDING and time.monotonic() >= head.deadline:
            trouble = True
        if trouble:
            self._recover()
            return
        while self.pending and self.pending[0].status == _APPLIED:
            self._retire(self.pending.popleft())

    def _on_reply(self, frame):
        match = None
        if frame.opcode in (_H2D_REPLY, _ERROR):
            for f in self.pending:
                if f.seq == frame.seq and f.status == _PENDING:
                    match = f
                    break
        if match is None:
            self.stats.stale_frames += 1
            return
        f = match
        if frame.opcode == _ERROR:
            if len(frame.payload) != 4:
                raise ProtocolError(self.client.url, self.what,
                                    f"ERROR reply of {len(frame.payload)} bytes, expected 4")
            req, code, detail = struct.unpack(">BBH", frame.payload)
            self.client._rx_arrived()
            if code != _STREAM_FULL:
                raise DeviceError(code, detail, req, f"{self.what} ({f.length} bytes)")
            f.status, f.free = _REFUSED, detail
        else:
            if len(frame.payload) != 5 or frame.payload[0] != self.channel:
                raise ProtocolError(self.client.url, self.what,
                                    f"expected channel:u8 accepted:u16 free:u16, "
                                    f"got {frame.payload.hex()}")
            accepted, free = struct.unpack_from(">HH", frame.payload, 1)
            if accepted != f.length:
                raise ProtocolError(self.client.url, self.what,
                                    f"device took {accepted} of {f.length} bytes; a stream frame "
                                    f"is taken whole or not at all")
            self.client._rx_arrived()
            f.status, f.free = _APPLIED, free
        if f.n > self.free_n:
            self.free, self.free_n = f.free, f.n

    def _retire(self, f):
        if f.length:
            self.delivered.append((f.offset, f.length))
            self.done += f.length
            self.stats.stream_bytes += f.length

    # -- recovery ---------------------------------------------------------------------------------

    def _recover(self):
        """Drain the window, settle each frame's fate, requeue what the device did not take."""
        self.stats.stream_recoveries += 1
        if self.done > self.done_at_recovery:
            self.done_at_recovery, self.fruitless = self.done, 0
        self.fruitless += 1
        if self.fruitless > self.client.retries + 1:
            self._give_up(f"{self.what} ({self.done} of {len(self.data)} bytes taken)")
        frames = list(self.pending)
        deadline = max(f.deadline for f in frames)
        while any(f.status == _PENDING for f in frames):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for frame in self.client._pump(left):
                self._on_reply(frame)
        unknown = [f for f in frames if f.status == _PENDING]
        if unknown == [frames[-1]]:
            self._retry_newest(frames[-1])
        elif unknown:
            self._settle_by_count(unknown)
        self._requeue(frames)

    def _retry_newest(self, f):
        """Resend the newest frame unchanged until it is answered (the device dedupes it)."""
        client = self.client
        errors_before = client.decoder.errors
        client._rx_ref = None                 # how many of the attempts arrived is unknown
        for attempt in range(client.retries):
            self.stats.retries += 1
            client.transport.write(f.wire)
            deadline = time.monotonic() + client.timeout
            while f.status == _PENDING:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for frame in client._pump(left):
                    self._on_reply(frame)
            if f.status != _PENDING:
                return
        self._give_up(f"{self.what} ({f.length} bytes)", client.decoder.errors - errors_before)

    def _give_up(self, what, corrupt=None):
        """Raise CRCErrors if corrupt frames came back, else NoResponse."""
        client = self.client
        corrupt = client.decoder.errors - self.errors_before if corrupt is None else corrupt
        attempts = client.retries + 1
        if corrupt:
            raise CRCErrors(client.url, what, corrupt, attempts, client.transport.baudrate)
        raise NoResponse(client.url, what, client.timeout, attempts, client.transport.baudrate)

    def _settle_by_count(self, unknown):
        """Tell from ``link.rx_frames`` whether the unanswered frames arrived (none or all)."""
        client = self.client
        ref = client._rx_ref
        if ref is None:
            raise StreamUncertain(client.url, self.channel, len(unknown), None, self.delivered,
                                  "no reference count of link.rx_frames was taken")
        start, known = ref
        value, retried = client._read_rx_frames()
        client._rx_ref = [value, 0]
        # the count includes the READ's own attempts that arrived: the answered one, and maybe
        # some of the ``retried`` ones before it whose replies were lost
        base = (value - start - known) % (1 << 32)
        possible = [base - reads for reads in range(1, retried + 2)
                    if 0 <= base - reads <= len(unknown)]
        if len(possible) != 1 or 0 < possible[0] < len(unknown):
            why = ("the count moved by more than was sent (board reset?)" if not possible else
                   "the read of link.rx_frames itself needed retries" if len(possible) > 1 else
                   f"{possible[0]} of them arrived and the count cannot say which")
            raise StreamUncertain(client.url, self.channel, len(unknown),
                                  possible[0] if len(possible) == 1 else None, self.delivered, why)
        arrived = possible[0]
        status = _APPLIED if arrived else _LOST
        for f in unknown:
            f.status = status

    def _requeue(self, frames):
        """Retire applied frames in send order; requeue the others; check the order."""
        missing = []
        gap = False
        for f in frames:
            if f.status == _APPLIED:
                if missing and f.length:
                    gap = True
                self._retire(f)
            elif f.length:
                missing.append((f.offset, f.length))
        if gap:
            self.stats.stream_reordered += 1
            if not self.reorder:
                raise StreamOrderError(self.client.url, self.channel, self.delivered, missing)
        self.pending.clear()
        for rng in reversed(missing):
            self.resend.appendleft(rng)
        # frames settled by count carry no room: recompute from the newest known report
        known = [f for f in frames if f.free is not None]
        if known:
            base, after = known[-1].free, [f for f in frames if f.n > known[-1].n]
        else:
            base, after = self.free, frames
        self.free = None if base is None else base - sum(f.length for f in after
                                                         if f.status == _APPLIED)
        self.free_n = -1
