"""The behavioural board: the golden model of the gateware's link, serving the wire protocol on TCP.

``ModelBoard`` is the device side of the link, transport-agnostic: ``receive(bytes)`` takes what the
host sent, ``next_tx()`` returns the next frame to send. It applies the rules of
``gateware.spec.protocol`` (its module docstring) exactly as the gateware must. Registers live in a
``RegisterBank`` built from ``REGISTER_MAP``; each block of the map gets its behaviour from a
``BlockModel`` (``CoreBlock``, ``LinkBlock``, Alice's ``AliceBlock``; the tagger adds its own), and
stream channels are ``StreamChannelModel`` objects (``LoopbackChannel``, ``ChoicesChannel``,
``ReportsChannel``).

The blocks live in their own modules: ``hil.model_core`` (the register bank, the block and
channel bases, ``CoreBlock``, ``LinkBlock``), ``hil.model_alice`` (``AliceBlock``) and
``hil.model_bob`` (``BobBlock``); this module puts a board together and serves it, and every
name is importable from here.

``ModelServer`` serves one board on ``127.0.0.1:PORT`` to one client at a time, like a serial
port: a new connection replaces the old one. Run it with ``qkdnode board model --port PORT``.

Conventions where the gateware has to match the model (the shared test vectors pin them):
``link.rx_frames`` counts a frame before it is executed (a READ of it includes itself); the reply
counts in ``link.tx_frames`` when sent; ``clear_counters`` zeroes the counters after its own frame
was counted; a request answered with ERROR is not remembered for the retry rule (it changed
nothing, so its retry is executed afresh).
"""

import logging
import selectors
import socket
import struct
import threading
from collections import deque

from controller.link.codec import FrameDecoder, crc16, encode_frame
from gateware.spec.protocol import MAX_BURST, MAX_PAYLOAD, ErrorCode, Opcode, reply_opcode
from gateware.spec.registers import DEVICE_ID, Role, role_register_map

from .model_alice import AliceBlock, ChoicesChannel, ReportsChannel
from .model_bob import BobBlock, EventsChannel
from .model_core import (
    CLK_HZ, LOOPBACK_DEPTH, BlockModel, CoreBlock, LinkBlock, LoopbackChannel, RegisterBank,
    StreamChannelModel, git_hash_word,
)

__all__ = ["RegisterBank", "BlockModel", "CoreBlock", "LinkBlock", "StreamChannelModel",
           "LoopbackChannel", "ChoicesChannel", "ReportsChannel", "AliceBlock", "EventsChannel",
           "BobBlock", "ModelBoard", "ModelServer", "git_hash_word", "serve", "CLK_HZ",
           "LOOPBACK_DEPTH"]

logger = logging.getLogger(__name__)


class ModelBoard:
    """The device side of the link: decodes requests, executes them, queues replies and streams.

    ``device_id`` and ``version`` (a core.version word) may be set to lie, for host error tests;
    ``corrupt_replies`` and ``corrupt_stream_frames`` are how many of the next reply frames and
    device-to-host stream frames get one CRC bit flipped (the host then sees a CRC error, and
    retries a request or counts a gap in the stream). Setting ``hold_streams`` (a threading.Event) stops the
    device-to-host streams, as a host that stops draining them would; replies still go out.
    ``role`` ``Role.ALICE`` adds the modulator (``AliceBlock``, built with ``alice_options``,
    reachable as ``board.alice``); ``Role.BOB`` the tagger (``BobBlock``, built with
    ``bob_options``, reachable as ``board.bob``). Thread-safe through ``lock``.
    """

    BLOCKS = (CoreBlock, LinkBlock)

    def __init__(self, *, device_id=DEVICE_ID, version=None, git_hash=None, clk_hz=CLK_HZ,
                 loopback_depth=LOOPBACK_DEPTH, corrupt_replies=0, corrupt_stream_frames=0,
                 role=Role.LINK, alice_options=None, bob_options=None):
        self.lock = threading.RLock()
        self.bank = RegisterBank(role_register_map(role))
        self.core = CoreBlock(self, device_id=device_id, version=version, git_hash=git_hash,
                              clk_hz=clk_hz, loopback_depth=loopback_depth)
        self.link = LinkBlock(self)
        self.blocks = [self.core, self.link]
        self.role = Role(role)
        if self.role is Role.ALICE:
            self.alice = AliceBlock(self, clk_hz=clk_hz, **(alice_options or {}))
            self.add_block(self.alice)
        if self.role is Role.BOB:
            self.bob = BobBlock(self, **(bob_options or {}))
            self.add_block(self.bob)
        self.corrupt_replies = corrupt_replies
        self.corrupt_stream_frames = corrupt_stream_frames
        self.hold_streams = threading.Event()
        self._decoder = FrameDecoder()
        self._replies = deque()
        self._stream_seq = {}
        self._last_key = None
        self._last_accepted = 0
        self._last_reply = None

    @property
    def channels(self):
        """Return {channel number: StreamChannelModel} over every block."""
        return {ch.channel: ch for block in self.blocks for ch in block.channels()}

    def add_block(self, block):
        """Add a BlockModel (tagger, modulator...) built for this board."""
        self.blocks.append(block)

    def reset(self):
        """Reset the board: registers, blocks, receiver, queued frames."""
        with self.lock:
            self.bank.reset()
            for block in self.blocks:
                block.reset()
            self.new_host()
            self._stream_seq.clear()

    def new_host(self):
        """Forget partial frames, unsent replies and the retry memory (a new host connected)."""
        with self.lock:
            self._decoder.reset()
            self._replies.clear()
            self._last_key = None

    # -- receive ----------------------------------------------------------------------------------

    def receive(self, data):
        """Take bytes from the host and execute every complete frame."""
        with self.lock:
            crc0, cobs0 = self._decoder.crc_errors, self._decoder.cobs_errors
            frames = self._decoder.feed(data)
            self.link.count("crc_errors", self._decoder.crc_errors - crc0)
            self.link.count("cobs_errors", self._decoder.cobs_errors - cobs0)
            for frame in frames:
                self.link.count("rx_frames")
                self._replies.append(self._execute(frame))

    def _execute(self, frame):
        op, seq, payload = frame
        key = (op, seq, crc16(bytes((op, seq)) + payload))
        if key == self._last_key:
            if op == Opcode.WRITE.value:
                return self._last_reply
            if op == Opcode.STREAM_H2D.value:
                return self._stream_reply(seq, payload[0], self._last_accepted)
        self._last_key = None
        try:
            reply = self._dispatch(op, seq, payload)
        except _Refused as err:
            self.link.count("bad_requests")
            return encode_frame(Opcode.ERROR.value, seq,
                                struct.pack(">BBH", op, err.code.value, err.detail & 0xFFFF))
        if op in (Opcode.WRITE.value, Opcode.STREAM_H2D.value):
            self._last_key, self._last_reply = key, reply
        return reply

    def _dispatch(self, op, seq, payload):
        handler = self._HANDLERS.get(op)
        if handler is None:
            raise _Refused(ErrorCode.BAD_OPCODE, 0)
        length = self._LENGTHS.get(op)
        if (len(payload) != length) if length is not None else not payload:
            raise _Refused(ErrorCode.BAD_LENGTH, len(payload))
        return handler(self, seq, payload)

    def _reply(self, op, seq, payload):
        return encode_frame(reply_opcode(op).value, seq, payload)

    def _read(self, seq, payload):
        (addr,) = struct.unpack(">H", payload)
        if not self.bank.mapped(addr):
            raise _Refused(ErrorCode.BAD_ADDRESS, addr)
        return self._reply(Opcode.READ, seq, struct.pack(">HI", addr, self.bank.read(addr)))

    def _write(self, seq, payload):
        addr, value = struct.unpack(">HI", payload)
        if not self.bank.mapped(addr):
            raise _Refused(ErrorCode.BAD_ADDRESS, addr)
        error = self.bank.write(addr, value)
        if error is not None:
            raise _Refused(error, addr)
        return self._reply(Opcode.WRITE, seq, payload[:2])

    def _burst_read(self, seq, payload):
        addr, count = struct.unpack(">HB", payload)
        if not 1 <= count <= MAX_BURST:
            raise _Refused(ErrorCode.BAD_COUNT, count)
        for a in range(addr, addr + count):
            if not self.bank.mapped(a & 0xFFFF) or a > 0xFFFF:
                raise _Refused(ErrorCode.BAD_ADDRESS, a)
        values = [self.bank.read(a) for a in range(addr, addr + count)]
        return self._reply(Opcode.BURST_READ, seq, payload + struct.pack(f">{count}I", *values))

    def _stream_h2d(self, seq, payload):
        channel, data = payload[0], payload[1:]
        ch = self.channels.get(channel)
        if ch is None or not ch.enabled():
            raise _Refused(ErrorCode.BAD_CHANNEL, channel)
        free = ch.free()
        if len(data) > free:
            raise _Refused(ErrorCode.STREAM_FULL, free)
        if data:
            ch.put(data)
        self._last_accepted = len(data)
        return self._stream_reply(seq, channel, len(data))

    def _stream_reply(self, seq, channel, accepted):
        ch = self.channels[channel]
        return self._reply(Opcode.STREAM_H2D, seq, struct.pack(">BHH", channel, accepted, ch.free()))

    _HANDLERS = {
        Opcode.READ.value: _read,
        Opcode.WRITE.value: _write,
        Opcode.BURST_READ.value: _burst_read,
        Opcode.STREAM_H2D.value: _stream_h2d,
    }
    #: Exact payload length per opcode; None means "at least one byte" (STREAM_H2D: the channel).
    _LENGTHS = {Opcode.READ.value: 2, Opcode.WRITE.value: 6, Opcode.BURST_READ.value: 3,
                Opcode.STREAM_H2D.value: None}

    # -- transmit ---------------------------------------------------------------------------------

    def next_tx(self):
        """Return the wire bytes of the next frame to send (replies first, then streams), or None."""
        with self.lock:
            if self._replies:
                wire = self._replies.popleft()
                if self.corrupt_replies > 0:
                    self.corrupt_replies -= 1
                    wire = _flip_crc_bit(wire)
            else:
                wire = self._next_stream_frame()
                if wire is None:
                    return None
                if self.corrupt_stream_frames > 0:
                    self.corrupt_stream_frames -= 1
                    wire = _flip_crc_bit(wire)
            self.link.count("tx_frames")
            return wire

    def _next_stream_frame(self):
        if self.hold_streams.is_set():
            return None
        for number, ch in sorted(self.channels.items()):
            data = ch.pull(MAX_PAYLOAD - 1)
            if data:
                seq = self._stream_seq.get(number, 0)
                self._stream_seq[number] = (seq + 1) & 0xFF
                return encode_frame(Opcode.STREAM_D2H.value, seq, bytes((number,)) + data)
        return None


class _Refused(Exception):
    def __init__(self, code, detail):
        self.code = code
        self.detail = detail


def _flip_crc_bit(wire):
    """Return ``wire`` (one encoded frame) with the low bit of its CRC flipped, re-encoded."""
    from gateware.spec.cobs import cobs_decode, cobs_encode
    raw = bytearray(cobs_decode(wire[:-1]))
    raw[-1] ^= 0x01
    return cobs_encode(bytes(raw)) + b"\x00"


class ModelServer:
    """Serve a ModelBoard on TCP, one client at a time (a new connection replaces the old).

    ``port`` 0 picks a free port (read ``port`` after construction). ``start()`` runs it in a
    daemon thread; ``serve_forever()`` in the caller's.
    """

    def __init__(self, board=None, host="127.0.0.1", port=0):
        self.board = board or ModelBoard()
        self._listener = socket.create_server((host, port))
        self._listener.setblocking(False)
        self.host, self.port = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._thread = None
        self._conn = None
        self._out = bytearray()

    @property
    def url(self):
        """Return the ``socket://`` URL a client opens to reach this board."""
        return f"socket://{self.host}:{self.port}"

    def start(self):
        """Start serving in a background thread; return self."""
        self._thread = threading.Thread(target=self.serve_forever, name="model-board", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving and close the sockets."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _drop(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._out.clear()

    def serve_forever(self, poll=0.02):
        """Serve until ``stop()`` (or KeyboardInterrupt in the caller's thread)."""
        try:
            while not self._stop.is_set():
                self._step(poll)
        finally:
            self._drop()

    def _step(self, poll):
        while len(self._out) < 4096 and self._conn is not None:
            wire = self.board.next_tx()
            if not wire:
                break
            self._out += wire
        sel = selectors.DefaultSelector()
        try:
            sel.register(self._listener, selectors.EVENT_READ, "listen")
            if self._conn is not None:
                events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self._out else 0)
                sel.register(self._conn, events, "conn")
            for key, mask in sel.select(poll):
                if key.data == "listen":
                    self._accept()
                    return
                if mask & selectors.EVENT_READ:
                    self._recv()
                if self._conn is not None and mask & selectors.EVENT_WRITE:
                    self._send()
        finally:
            sel.close()

    def _accept(self):
        try:
            conn, peer = self._listener.accept()
        except BlockingIOError:
            return
        if self._conn is not None:
            logger.info("new host %s:%d replaces the previous connection", *peer[:2])
        self._drop()
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn = conn
        self.board.new_host()

    def _recv(self):
        try:
            data = self._conn.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop()
            return
        self.board.receive(data)

    def _send(self):
        try:
            sent = self._conn.send(self._out)
        except BlockingIOError:
            return
        except OSError:
            self._drop()
            return
        del self._out[:sent]


def serve(port=0, host="127.0.0.1", board=None, announce=print):
    """Serve a board on ``host:port`` until KeyboardInterrupt; ``announce`` gets the URL line."""
    server = ModelServer(board, host=host, port=port)
    announce(f"model board serving on {server.url} (Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
