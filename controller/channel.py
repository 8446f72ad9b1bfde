"""The classical channel between the two controllers: TCP, every message authenticated (Wegman-Carter).

Authentication is information-theoretic: a tag is ``(H_k(T) + r_i) mod p`` with ``p = 2^127 - 1``,
``H_k`` the polynomial hash over GF(p) of ``T`` cut into 15-byte blocks (an ε-almost-Δ-universal
family, ε = L/p for L blocks) and ``r_i`` 128 fresh one-time key bits (127 used) taken at the
tag's index from the sender's direction of the :class:`AuthKeyPool`.  The hash key ``k`` stays;
the pads are used once.  ``T`` is the sender's *transcript* since its previous tag: every frame
it sent since then, in order, ending with the tagged frame.  By default every frame is tagged
(``T`` is the frame).  A channel opened with ``deferred=True`` sends block-lane data frames
untagged unless the caller asks for a checkpoint (``send(..., checkpoint=True)``): the receiver
hashes each untagged frame into its copy of the transcript and hands it on *unauthenticated*;
the next tag (a checkpoint, an ABORT, a KME-lane frame, all always tagged) authenticates all of
them at once, and any change, insertion, removal, reordering or replay of one of them fails it.
The node (:mod:`controller.node.runner`) puts one checkpoint per direction at the end of each
block (and Bob's "committed") and uses nothing of a block (key, pads, alarms) before both have
been verified, so a block costs three pads instead of one per message; it receives those with
``recv(..., checkpoint=True)``, which refuses an untagged frame in their place.  The handshake
carries each end's pad top-up generation (:attr:`AuthKeyPool.generation`; floor exchange, then
confirmed under the HELLO's tag) so that neither end authenticates with pads the other lacks.  The pool is bootstrapped from a pre-shared secret
file (0600) and replenished from distilled key (:meth:`AuthKeyPool.replenish`); its consumption is
counted so the operator sees the authentication budget.

A frame binds its direction, lane, kind, block number, index (= sequence number, the pad index) and
metering fields into the tag.  A tampered, replayed or reordered frame raises a typed error from
``recv``, aborts the current block on both sides (:meth:`AuthChannel.abort_block`) and is counted.

:class:`AuthChannel` implements the post-processing channel interface
(:class:`controller.postprocess.channel.Channel`: ``send(sender, ...)``, ``recv(receiver)``,
``stats``) for its own party, metering both directions the same way as ``LocalChannel``;
:class:`TcpChannelPair` puts two endpoints behind that interface in one process.
"""

from __future__ import annotations

import hmac
import json
import queue
import socket
import struct
import threading
from dataclasses import asdict, dataclass, field

import numpy as np

# The pool, the tag and the base errors live in controller.kms.authkeys; re-exported here.
from controller.kms.authkeys import (P127, PARTIES, AuthBudget, AuthKeyExhausted,  # noqa: F401
                                     AuthKeyPool, ChannelError, _other, poly_hash, wc_tag)
from controller.postprocess.channel import ChannelStats, Payload, payload_bits

LANE_BLOCK, LANE_KME_REQ, LANE_KME_REP = 0, 1, 2
KIND_DATA, KIND_HELLO, KIND_ABORT, KIND_FLOOR = 0, 1, 2, 3
MAX_PAYLOAD = 64 << 20

_HDR = struct.Struct(">2sBBBBBBQQQI")   # magic ver kind dir lane flags taglen block index bits len
MAGIC, VERSION = b"QC", 2
FLAG_LEAKS, FLAG_TAGGED = 1, 2           # header flags: metered as key leak; carries a tag
NO_TAG = bytes(16)                       # the MAC field of an untagged frame
ARRAY_KINDS = "biuf"                     # dtype kinds of array payloads: bool, integers, floats


def absorb(key: int, h: int, data: bytes) -> int:
    """Continue the polynomial hash ``h`` over ``data`` (15-byte blocks, as :func:`poly_hash`).

    ``absorb(k, 0, m) == poly_hash(k, m)``; absorbing frames one after the other hashes their
    concatenation block-aligned per frame, which is injective because every frame carries its
    own lengths in its header.
    """
    for i in range(0, len(data), 15):
        block = data[i:i + 15]
        h = (h + int.from_bytes(block, "little") + (1 << (8 * len(block)))) * key % P127
    return h


class _Tagged(bytes):
    """A block-lane payload that arrived in a tagged frame (authenticated by its own tag)."""


def _tag_bytes(h: int, pad: bytes) -> bytes:
    return ((h + (int.from_bytes(pad, "big") & P127)) % P127).to_bytes(16, "big")


# -- errors ---------------------------------------------------------------------------------------

class ChannelClosed(ChannelError):
    """The TCP connection ended."""


class ChannelTimeout(ChannelError):
    """No message arrived in time."""


class ChannelAuthError(ChannelError):
    """A received frame failed authentication; the current block is aborted."""


class _Misframed(ChannelClosed):
    """A frame header that does not parse: before the handshake a wrong peer, after it tampering."""


class TamperedMessage(ChannelAuthError):
    """The tag does not match the frame (modified, forged, or wrong direction)."""


class ReplayedMessage(ChannelAuthError):
    """A frame with an index already used (replay)."""


class ReorderedMessage(ChannelAuthError):
    """An authentic frame arrived ahead of its turn (frames before it were removed)."""


class BlockAborted(ChannelError):
    """The current block was aborted (by this side or the peer); start a new block."""


# -- payload encoding -----------------------------------------------------------------------------

def encode_payload(payload: Payload) -> bytes:
    """Serialise bytes or a numpy array (no pickle): kind, dtype, shape, raw data."""
    if isinstance(payload, (bytes, bytearray, memoryview)):
        return b"\x00" + bytes(payload)
    if isinstance(payload, np.ndarray):
        if payload.dtype.kind not in ARRAY_KINDS:
            raise TypeError(f"only bool, integer and float arrays are sent on the channel, "
                            f"got dtype {payload.dtype}")
        arr = np.ascontiguousarray(payload)
        dt = arr.dtype.str.encode()
        return (b"\x01" + bytes([len(dt)]) + dt + bytes([arr.ndim])
                + b"".join(struct.pack(">Q", d) for d in arr.shape) + arr.tobytes())
    raise TypeError(f"channel payloads are bytes or numpy arrays, got {type(payload).__name__}")


def decode_payload(data: bytes) -> Payload:
    """Inverse of :func:`encode_payload`."""
    if data[:1] == b"\x00":
        return bytes(data[1:])
    if data[:1] != b"\x01":
        raise ChannelError("unknown payload encoding")
    n = data[1]
    dt = np.dtype(data[2:2 + n].decode())
    if dt.kind not in ARRAY_KINDS or dt.shape:
        raise ChannelError(f"array payloads are bool, integer or float, got dtype {dt}")
    ndim = data[2 + n]
    pos = 3 + n
    shape = tuple(struct.unpack(">Q", data[pos + 8 * i:pos + 8 * i + 8])[0] for i in range(ndim))
    return np.frombuffer(data[pos + 8 * ndim:], dtype=dt).reshape(shape).copy()


# -- the channel endpoint ---------------------------------------------------------------------------

@dataclass
class AuthCounters:
    """Frames sent/received and the authentication failures seen, for the operator."""

    sent: int = 0
    received: int = 0
    tampered: int = 0
    replayed: int = 0
    reordered: int = 0
    stale: int = 0
    exhausted: int = 0
    blocks_aborted: int = 0

    @property
    def auth_failures(self) -> int:
        return self.tampered + self.replayed + self.reordered


@dataclass
class _Frame:
    kind: int
    lane: int
    block: int
    index: int
    bits: int
    leaks_key: bool
    tag: str
    body: bytes = field(repr=False)
    tagged: bool = True


class AuthChannel:
    """One party's end of the authenticated channel over a connected TCP socket.

    Use :func:`listen` / :func:`connect` to make one.  ``send``/``recv`` follow the
    post-processing :class:`~controller.postprocess.channel.Channel` interface (``sender`` /
    ``receiver`` must be this party); :meth:`send_on` / :meth:`recv_on` reach other lanes.
    ``deferred``: block-lane data frames go untagged unless sent with ``checkpoint=True`` (both
    ends must agree; see the module doc).  ``unverified`` counts the frames received since the
    last verified tag: data handed on that no tag has confirmed yet.
    """

    def __init__(self, sock: socket.socket, party: str, pool: AuthKeyPool, *, timeout: float = 30.0,
                 deferred: bool = False):
        self.party, self.peer = party, _other(party)
        self.pool = pool
        self.timeout = timeout
        self.deferred = bool(deferred)
        self._send_run = 0          # hash of what this end sent since its last tag
        self._send_next = None      # pad index of this end's next tag (known after the HELLO)
        self._recv_run = 0          # hash of what the peer sent since its last verified tag
        self.unverified = 0
        self.last_tagged = False    # whether the last block-lane message recv returned was tagged
        self.tags_sent = 0
        self.stats = ChannelStats()
        self.counters = AuthCounters()
        self.block = 0
        self._aborted: int | None = None
        self.last_error: ChannelError | None = None
        self._sock = sock
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._lanes: dict[int, queue.Queue] = {lane: queue.Queue() for lane in (0, 1, 2)}
        self._last_dir: str | None = None
        self._closed = threading.Event()
        self._hello = threading.Event()
        self._expect = pool.recv_floor(self.peer)
        self._first = True
        self.peer_generation: int | None = None     # the peer's pad top-up generation (HELLO)
        self._claimed_generation: int | None = None
        try:
            self._handshake()
        except BaseException:
            self.close()
            raise

    # -- framing ------------------------------------------------------------------------------

    def _frame_bytes(self, kind, lane, block, index, bits, leaks, tag: bytes, body: bytes,
                     tagged: bool = True) -> bytes:
        flags = (FLAG_LEAKS if leaks else 0) | (FLAG_TAGGED if tagged else 0)
        return _HDR.pack(MAGIC, VERSION, kind, PARTIES.index(self.party), lane, flags, len(tag),
                         block, index, bits, len(body)) + tag + body

    def _send_frame(self, kind: int, lane: int, body: bytes, *, bits: int = 0, leaks: bool = False,
                    tag: str = "", block: int | None = None, checkpoint: bool = True) -> None:
        if len(body) > MAX_PAYLOAD:
            raise ChannelError(f"message of {len(body)} bytes exceeds the {MAX_PAYLOAD}-byte limit")
        tag_b = tag.encode()[:255]
        block = self.block if block is None else block
        untagged = (self.deferred and not checkpoint and kind == KIND_DATA and lane == LANE_BLOCK
                    and self._send_next is not None)
        with self._send_lock:
            if self._closed.is_set():
                raise ChannelClosed("the channel is closed")
            if kind == KIND_FLOOR:
                data = self._frame_bytes(kind, lane, block, 0, 0, False, tag_b, body, False) + NO_TAG
            elif untagged:
                # no pad now: the sender's next tag (same index) authenticates this frame too
                data = self._frame_bytes(kind, lane, block, self._send_next, bits, leaks, tag_b,
                                         body, False)
                self._send_run = absorb(self.pool.hash_key, self._send_run, data)
                data += NO_TAG
            else:
                try:
                    index, pad = self.pool.take_send(self.party)
                except AuthKeyExhausted:
                    self.counters.exhausted += 1
                    raise
                data = self._frame_bytes(kind, lane, block, index, bits, leaks, tag_b, body)
                data += _tag_bytes(absorb(self.pool.hash_key, self._send_run, data), pad)
                self._send_run = 0
                self._send_next = index + 1
                self.tags_sent += 1
            try:
                self._sock.sendall(data)
            except OSError as exc:
                self._closed.set()
                raise ChannelClosed(f"sending to the peer failed: {exc.strerror or exc}") from None
            if kind != KIND_FLOOR:
                self.counters.sent += 1

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self._sock.recv(min(n - len(buf), 1 << 20))
            if not chunk:
                raise ChannelClosed("the peer closed the connection")
            buf += chunk
        return bytes(buf)

    def _read_frame(self) -> tuple[_Frame, int, bytes, bytes]:
        head = self._recv_exact(_HDR.size)
        magic, ver, kind, direction, lane, flags, tlen, block, index, bits, blen = _HDR.unpack(head)
        if magic != MAGIC or ver != VERSION:
            raise _Misframed(f"not a qkdnode channel frame (magic {magic!r}, version {ver})")
        if blen > MAX_PAYLOAD:
            raise _Misframed(f"peer announced a {blen}-byte frame (limit {MAX_PAYLOAD})")
        rest = self._recv_exact(tlen + blen + 16)
        tag = rest[:tlen].decode("utf-8", "replace")
        frame = _Frame(kind, lane, block, index, bits, bool(flags & FLAG_LEAKS), tag,
                       rest[tlen:tlen + blen], bool(flags & FLAG_TAGGED))
        return frame, direction, head + rest[:tlen + blen], rest[tlen + blen:]

    # -- handshake ----------------------------------------------------------------------------

    def _handshake(self) -> None:
        """Exchange receive floors and pad generations (unauthenticated), then authenticated HELLOs.

        The FLOOR frame says which pads this end will accept and which top-up generation it
        holds; until the HELLO confirms it, the claim only limits which pads this end sends with
        (:meth:`AuthKeyPool.send_limit`): a false claim can stop the session, never make it use a
        pad twice or one the peer lacks.  The HELLO repeats the generation under a tag."""
        self._sock.settimeout(self.timeout)
        self._send_frame(KIND_FLOOR, 0, struct.pack(">QQ", self.pool.recv_floor(self.peer),
                                                    self.pool.generation))
        frame, _, _, _ = self._read_frame()
        if frame.kind != KIND_FLOOR or len(frame.body) not in (8, 16):
            raise ChannelClosed("peer did not start with the channel handshake")
        self.pool.skip_send(self.party, struct.unpack(">Q", frame.body[:8])[0])
        if len(frame.body) == 16:
            self._claimed_generation = struct.unpack(">Q", frame.body[8:])[0]
        self.pool.set_peer_generation(self._claimed_generation)
        self._send_frame(KIND_HELLO, 0, json.dumps({"party": self.party,
                                                    "gen": self.pool.generation}).encode())
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read_loop, name=f"channel-{self.party}",
                                        daemon=True)
        self._reader.start()
        if not self._hello.wait(self.timeout) or self.last_error is not None:
            err = self.last_error
            self.close()
            raise err if isinstance(err, ChannelError) else ChannelClosed(
                "no authenticated HELLO from the peer: the two ends do not share the same secret")

    # -- receiving ----------------------------------------------------------------------------

    def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                try:
                    frame, direction, signed, mac = self._read_frame()
                except _Misframed as exc:
                    # In an open session a header that does not parse was altered on the way
                    # (the header is covered by the tag, but framing comes first): tampering.
                    # The stream is out of step, so the session ends after the block aborts.
                    if self._hello.is_set():
                        self.counters.tampered += 1
                        self._fail(TamperedMessage(f"a frame header from {self.peer} was "
                                                   f"altered ({exc}); the block is void"))
                    raise
                try:
                    self._accept(frame, direction, signed, mac)
                except ChannelAuthError as exc:
                    self._fail(exc)
                except AuthKeyExhausted as exc:
                    self.counters.exhausted += 1
                    self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - any reader failure ends the session
            if isinstance(exc, ChannelClosed):
                err = exc
            elif isinstance(exc, OSError):
                err = ChannelClosed(f"connection lost: {exc.strerror or exc}")
            else:
                err = ChannelClosed(f"channel reader failed ({type(exc).__name__}); reconnect")
            self._closed.set()
            for q in self._lanes.values():
                q.put(err)
            if not self._hello.is_set():
                self.last_error = self.last_error or err
                self._hello.set()

    def _accept(self, frame: _Frame, direction: int, signed: bytes, mac: bytes) -> None:
        peer_dir = PARTIES.index(self.peer)
        if direction != peer_dir:
            self.counters.tampered += 1
            raise TamperedMessage(f"frame {frame.index} claims direction {direction}, expected "
                                  f"{self.peer}->{self.party}")
        if frame.kind == KIND_FLOOR:
            self.counters.tampered += 1
            raise TamperedMessage("unexpected handshake frame in an open session")
        idx = frame.index
        if idx < self._expect:
            self.counters.replayed += 1
            raise ReplayedMessage(f"frame index {idx} from {self.peer} was already used "
                                  f"(expecting {self._expect}): replayed")
        if not frame.tagged:
            # deferred: only block-lane data, only in an open session, at the index of the
            # sender's next tag; it is hashed into the transcript and handed on unauthenticated
            if not (self.deferred and self._hello.is_set() and frame.kind == KIND_DATA
                    and frame.lane == LANE_BLOCK):
                self.counters.tampered += 1
                raise TamperedMessage(f"an untagged frame from {self.peer} where a tag is "
                                      f"required (lane {frame.lane}, kind {frame.kind})")
            if idx != self._expect:
                self.counters.reordered += 1
                raise ReorderedMessage(f"untagged frame at index {idx} from {self.peer} while "
                                       f"{self._expect} was expected: frames were removed")
            self._recv_run = absorb(self.pool.hash_key, self._recv_run, signed)
            self.unverified += 1
        else:
            pad = self.pool.recv_pad(self.peer, idx)
            run = absorb(self.pool.hash_key, self._recv_run, signed)
            ok = hmac.compare_digest(_tag_bytes(run, pad), mac)
            if not ok:
                self.counters.tampered += 1
                if idx == self._expect:
                    self._expect = idx + 1           # that pad was spent by the sender: burn it
                    self.pool.burn_recv(self.peer, self._expect)
                what = (f"frame {idx} from {self.peer} fails authentication (modified or forged)"
                        if not self.unverified else
                        f"tag {idx} from {self.peer} does not match the {self.unverified + 1} "
                        f"frames it covers: one of them was modified, inserted, removed or replayed")
                raise TamperedMessage(what)
            self._recv_run, self.unverified = 0, 0
            jumped = idx > self._expect
            self._expect = idx + 1
            self.pool.burn_recv(self.peer, self._expect)
            if jumped and not self._first:
                self.counters.reordered += 1
                raise ReorderedMessage(f"frame {idx} from {self.peer} arrived while {idx - 1} or "
                                       f"earlier was expected: frames were removed or reordered")
            self._first = False
        self.counters.received += 1
        if frame.kind == KIND_HELLO:
            if self._hello.is_set():
                self.counters.replayed += 1
                raise ReplayedMessage(f"a second HELLO from {self.peer} in one session")
            try:
                gen = json.loads(frame.body.decode()).get("gen")
            except (ValueError, UnicodeDecodeError, AttributeError):
                gen = -1
            if gen != self._claimed_generation:
                self.counters.tampered += 1
                raise TamperedMessage(f"the HELLO from {self.peer} names pad generation {gen}, its "
                                      f"handshake claimed {self._claimed_generation}")
            self.peer_generation = gen
            self._hello.set()
        elif frame.kind == KIND_ABORT:
            if frame.block != self.block or self._aborted == self.block:
                return                               # an old block, or aborted here already
            self._aborted = self.block
            self.counters.blocks_aborted += 1
            self._drain(LANE_BLOCK)
            self._lanes[LANE_BLOCK].put(BlockAborted(
                f"the peer aborted block {frame.block}: {frame.body.decode('utf-8', 'replace')}"))
        elif frame.kind == KIND_DATA:
            if frame.lane == LANE_BLOCK and frame.block != self.block:
                self.counters.stale += 1            # a message of an aborted block still in flight
                return
            if frame.lane not in self._lanes:
                return
            if frame.lane == LANE_BLOCK:
                self._meter(self.peer, frame.bits, frame.leaks_key, frame.tag)
                self._lanes[frame.lane].put(_Tagged(frame.body) if frame.tagged else frame.body)
            else:
                self._lanes[frame.lane].put(frame.body)

    def _fail(self, exc: ChannelError) -> None:
        """Record an authentication failure: abort the block here and tell the peer."""
        self.last_error = exc
        if not self._hello.is_set():               # failed handshake: the constructor raises it
            self._hello.set()
            return
        if self._aborted == self.block:            # already aborted: report the first error only
            return
        self._aborted = self.block
        self.counters.blocks_aborted += 1
        self._drain(LANE_BLOCK)
        self._lanes[LANE_BLOCK].put(exc)
        try:
            self._send_frame(KIND_ABORT, LANE_BLOCK, f"{type(exc).__name__}".encode())
        except ChannelError:
            pass

    def _drain(self, lane: int) -> None:
        q = self._lanes[lane]
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                return

    def _meter(self, sender: str, bits: int, leaks: bool, tag: str) -> None:
        with self._stats_lock:
            self.stats.record(bits, leaks=leaks, tag=tag, new_flight=sender != self._last_dir)
            self._last_dir = sender

    # -- public API -----------------------------------------------------------------------------

    def send(self, sender: str, payload: Payload, *, bits: int | None = None,
             leaks_key: bool = False, tag: str = "", checkpoint: bool = False) -> None:
        """Send ``payload`` to the peer on the block lane and meter it (``sender`` is this party).

        On a ``deferred`` channel the frame is tagged only with ``checkpoint=True`` (its tag then
        covers everything sent since the previous tag); otherwise every frame is tagged."""
        if sender != self.party:
            raise ValueError(f"this channel end is {self.party}'s; it cannot send as {sender!r}")
        n = payload_bits(payload) if bits is None else int(bits)
        if n < 0:
            raise ValueError(f"declared bit count must be >= 0, got {n}")
        data = encode_payload(payload)
        # metered before the frame leaves: the peer's reply can be metered by the reader thread
        # as soon as it is sent, and metered after it this message would join the reply's
        # flight (one round lost from the count; the leak was unaffected)
        self._meter(self.party, n, leaks_key, tag)
        self._send_frame(KIND_DATA, LANE_BLOCK, data, bits=n, leaks=leaks_key, tag=tag,
                         checkpoint=checkpoint)

    def recv(self, receiver: str, timeout: float | None = None, *,
             checkpoint: bool = False) -> Payload:
        """Return the next block-lane message; raises a :class:`ChannelAuthError` or :class:`BlockAborted`.

        A payload that does not decode was altered on the way (the peer only sends well-formed
        ones): :class:`TamperedMessage`, counted, the block aborted.  ``checkpoint=True``: the
        message must have come in a tagged frame (the peer sent it with ``checkpoint=True``), so
        that it and everything before it are authenticated when it is returned; an untagged one
        in its place was inserted on the way (:class:`TamperedMessage`)."""
        if receiver != self.party:
            raise ValueError(f"this channel end is {self.party}'s; it cannot receive for {receiver!r}")
        data = self.recv_on(LANE_BLOCK, timeout)
        self.last_tagged = isinstance(data, _Tagged)
        if checkpoint and not isinstance(data, _Tagged):
            raise self.suspect(f"an untagged frame from {self.peer} where a checkpoint is due")
        try:
            return decode_payload(data)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is the same finding
            raise self.suspect(f"a block-lane payload from {self.peer} does not decode "
                               f"({type(exc).__name__}: {exc})") from None

    def suspect(self, reason: str) -> TamperedMessage:
        """Record that unauthenticated data from the peer was malformed; return the error to raise.

        Counted as tampering and the block is aborted at both ends (the peer's next ``recv``
        raises :class:`BlockAborted`)."""
        exc = TamperedMessage(f"{reason}; {self.unverified} frame(s) not yet authenticated: "
                              f"treated as tampering")
        self.counters.tampered += 1
        self.last_error = exc
        if self._aborted != self.block:
            try:
                self.abort_block("malformed data")
            except ChannelError:
                pass
        return exc

    def send_on(self, lane: int, body: bytes) -> None:
        """Send raw bytes on ``lane`` (not metered as post-processing traffic)."""
        self._send_frame(KIND_DATA, lane, bytes(body))

    def recv_on(self, lane: int, timeout: float | None = None) -> bytes:
        """Return the next message on ``lane`` (waits up to ``timeout`` s, default ``self.timeout``)."""
        try:
            item = self._lanes[lane].get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            raise ChannelTimeout(f"no message from {self.peer} within "
                               f"{self.timeout if timeout is None else timeout} s") from None
        if isinstance(item, Exception):
            if isinstance(item, ChannelClosed):
                self._lanes[lane].put(item)          # stays closed for every later call
            raise item
        return item

    def replenish(self, key_bits: bytes) -> int:
        """Add distilled key to the authentication pool (same bits on both ends); return bits added."""
        return self.pool.replenish(key_bits)

    def begin_block(self, block: int) -> None:
        """Start block number ``block`` (both ends, same number): clears the block lane."""
        self.block = int(block)
        self._aborted = None
        self._drain(LANE_BLOCK)

    def abort_block(self, reason: str = "aborted") -> None:
        """Abort the current block here and at the peer (whose ``recv`` then raises BlockAborted)."""
        self._aborted = self.block
        self.counters.blocks_aborted += 1
        self._drain(LANE_BLOCK)
        self._send_frame(KIND_ABORT, LANE_BLOCK, reason.encode()[:200])

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        """Close the connection."""
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def figures(self) -> dict:
        """Return counters and the authentication budget as one dict (for status and metrics)."""
        return asdict(self.counters) | {"auth_failures": self.counters.auth_failures} | \
            {"auth_" + k: v for k, v in asdict(self.pool.budget()).items()}


# -- making connections ------------------------------------------------------------------------------

class ChannelListener:
    """A listening socket that turns each accepted connection into an :class:`AuthChannel`."""

    def __init__(self, party: str, pool: AuthKeyPool, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 30.0, deferred: bool = False):
        self.party, self.pool, self.timeout, self.deferred = party, pool, timeout, deferred
        self._sock = socket.create_server((host, port))
        self.address = self._sock.getsockname()[:2]

    def accept(self, timeout: float | None = None) -> AuthChannel:
        """Wait for the peer to connect; return the channel once the handshake is done."""
        self._sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            conn, _ = self._sock.accept()
        except socket.timeout:
            raise ChannelError(f"no peer connected to {self.address[0]}:{self.address[1]} "
                               f"within {self._sock.gettimeout()} s") from None
        return AuthChannel(conn, self.party, self.pool, timeout=self.timeout, deferred=self.deferred)

    def close(self) -> None:
        self._sock.close()


def connect(party: str, pool: AuthKeyPool, host: str, port: int, *, timeout: float = 30.0,
            deferred: bool = False) -> AuthChannel:
    """Connect to the peer's :class:`ChannelListener` at ``host:port``."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ChannelClosed(f"cannot reach the peer controller at {host}:{port}: "
                            f"{exc.strerror or exc}. Is it running, and is the address right?") from None
    return AuthChannel(sock, party, pool, timeout=timeout, deferred=deferred)


def open_pair(secret: bytes, *, alice_state=None, bob_state=None, timeout: float = 30.0,
              deferred: bool = False) -> tuple[AuthChannel, AuthChannel]:
    """Return connected (alice, bob) channel ends over loopback TCP sharing ``secret``."""
    listener = ChannelListener("alice", AuthKeyPool(secret, state_path=alice_state), timeout=timeout,
                               deferred=deferred)
    result: dict = {}

    def accept():
        try:
            result["alice"] = listener.accept()
        except Exception as exc:  # noqa: BLE001 - handed to the caller below
            result["error"] = exc

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        bob = connect("bob", AuthKeyPool(secret, state_path=bob_state), *listener.address,
                      timeout=timeout, deferred=deferred)
    finally:
        t.join(timeout)
        listener.close()
    if "error" in result:
        bob.close()
        raise result["error"]
    return result["alice"], bob


class TcpChannelPair:
    """Both parties' ends in one process behind the post-processing ``Channel`` interface.

    Lets the existing two-party post-processing functions run over real, authenticated TCP;
    ``stats`` is Alice's end's (both ends meter the same traffic).
    """

    def __init__(self, alice: AuthChannel, bob: AuthChannel):
        self.ends = {"alice": alice, "bob": bob}

    @property
    def stats(self) -> ChannelStats:
        return self.ends["alice"].stats

    def send(self, sender, payload, *, bits=None, leaks_key=False, tag=""):
        self.ends[sender].send(sender, payload, bits=bits, leaks_key=leaks_key, tag=tag)

    def recv(self, receiver):
        return self.ends[receiver].recv(receiver)

    def close(self):
        for end in self.ends.values():
            end.close()
