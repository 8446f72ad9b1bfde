"""The behavioural board: the golden model of the gateware's link, serving the wire protocol on TCP.

``ModelBoard`` is the device side of the link, transport-agnostic: ``receive(bytes)`` takes what the
host sent, ``next_tx()`` returns the next frame to send. It applies the rules of
``gateware.spec.protocol`` (its module docstring) exactly as the gateware must. Registers live in a
``RegisterBank`` built from ``REGISTER_MAP``; each block of the map gets its behaviour from a
``BlockModel`` (``CoreBlock``, ``LinkBlock``, Alice's ``AliceBlock``; the tagger adds its own), and
stream channels are ``StreamChannelModel`` objects (``LoopbackChannel``, ``ChoicesChannel``,
``ReportsChannel``).

``ModelServer`` serves one board on ``127.0.0.1:PORT`` to one client at a time, like a serial
port: a new connection replaces the old one. Run it with ``qkdnode board model --port PORT``.

Conventions where the gateware has to match the model (the shared test vectors pin them):
``link.rx_frames`` counts a frame before it is executed (a READ of it includes itself); the reply
counts in ``link.tx_frames`` when sent; ``clear_counters`` zeroes the counters after its own frame
was counted; a request answered with ERROR is not remembered for the retry rule (it changed
nothing, so its retry is executed afresh).
"""

import functools
import logging
import selectors
import socket
import struct
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from controller.link.codec import FrameDecoder, crc16, encode_frame
from gateware.spec.protocol import (
    MAX_BURST, MAX_PAYLOAD, ErrorCode, Opcode, StreamChannel, reply_opcode,
)
from gateware.spec.registers import DEVICE_ID, REGISTER_MAP, Access, Role, role_register_map
from gateware.spec.tagger import CHANNEL_COUNTERS, CHANNELS, GLOBAL_COUNTERS, HIST_BINS
from gateware.spec.modulator import (
    MIN_SLOT_PERIOD, REPORT_BYTES, Intensity, ReportKind, ReportLayout, choice_fires, choice_state,
    lfsr_choices, lfsr_step,
)

__all__ = ["RegisterBank", "BlockModel", "CoreBlock", "LinkBlock", "StreamChannelModel",
           "LoopbackChannel", "ChoicesChannel", "ReportsChannel", "AliceBlock", "EventsChannel", "BobBlock", "ModelBoard", "ModelServer", "git_hash_word", "serve"]

logger = logging.getLogger(__name__)

CLK_HZ = 48_000_000
LOOPBACK_DEPTH = 512


@functools.lru_cache(maxsize=None)
def git_hash_word(repo=None):
    """Return the first 8 hex digits of the repository's HEAD commit as an int, or 0."""
    repo = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        return int(out[:8], 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return 0


class RegisterBank:
    """The registers of a map: values, access rules, and per-register hooks from the blocks.

    ``on_read[path](index) -> int`` supplies a register's live value (RO registers driven by
    behaviour); ``on_write[path](value, index)`` is called after an RW register stored ``value`` or
    when a W1P register is written. Values are masked to the register's width.
    """

    def __init__(self, regmap=REGISTER_MAP):
        self.map = regmap
        self.values = {}
        self.on_read = {}
        self.on_write = {}
        self.reset()

    def reset(self):
        """Return every register to its reset value."""
        for info in self.map:
            for i in range(info.count):
                self.values[info.address + i] = info.init if info.access is not Access.W1P else 0

    def mapped(self, addr):
        """Return True if a register lives at word address ``addr``."""
        return self.map.at(addr) is not None

    def get(self, path, index=0):
        """Return the stored value of register ``path`` (no hooks)."""
        return self.values[self.map.address(path, index)]

    def set(self, path, value, index=0):
        """Store ``value`` in register ``path`` as the gateware drives it (no access check)."""
        info = self.map[path]
        self.values[self.map.address(path, index)] = value & ((1 << info.width) - 1)

    def read(self, addr):
        """Return the value the host reads at ``addr`` (which must be mapped)."""
        info, index = self.map.at(addr)
        if info.access is Access.W1P:
            return 0
        hook = self.on_read.get(info.path)
        value = hook(index) if hook else self.values[addr]
        return value & ((1 << info.width) - 1)

    def write(self, addr, value):
        """Apply a host write at mapped ``addr``; return ErrorCode.READ_ONLY or None."""
        info, index = self.map.at(addr)
        if info.access is Access.RO:
            return ErrorCode.READ_ONLY
        value &= (1 << info.width) - 1
        if info.access is Access.RW:
            self.values[addr] = value
        hook = self.on_write.get(info.path)
        if hook:
            hook(value, index)
        return None


class StreamChannelModel:
    """One stream channel of the board. Subclasses implement what their block does with it."""

    channel = None

    def enabled(self):
        """Return True if the channel takes host-to-device data now."""
        return False

    def free(self):
        """Return the bytes of room for host-to-device data."""
        return 0

    def put(self, data):
        """Take host-to-device ``data`` (the caller checked ``free()``)."""
        raise NotImplementedError

    def pull(self, limit):
        """Return up to ``limit`` bytes to send device-to-host now (b"" if none)."""
        return b""

    def reset(self):
        """Empty the channel's buffers."""


class LoopbackChannel(StreamChannelModel):
    """LOOPBACK: host-to-device bytes come back unchanged; a FIFO of ``depth`` bytes."""

    channel = StreamChannel.LOOPBACK.value

    def __init__(self, bank, depth=LOOPBACK_DEPTH):
        self.bank = bank
        self.depth = depth
        self.fifo = bytearray()

    def enabled(self):
        return bool(self.bank.get("core.control") & 1)

    def free(self):
        return self.depth - len(self.fifo)

    def put(self, data):
        self.fifo += data

    def pull(self, limit):
        out = bytes(self.fifo[:limit])
        del self.fifo[:len(out)]
        return out

    def reset(self):
        self.fifo.clear()


class BlockModel:
    """Behaviour of one block of the register map: hooks into the bank, stream channels."""

    name = None

    def __init__(self, board):
        self.board = board
        self.bank = board.bank

    def channels(self):
        """Return the StreamChannelModel objects this block serves."""
        return []

    def reset(self):
        """Return the block's own state to reset."""


class CoreBlock(BlockModel):
    """``core``: identity, version, clock counter, control, command and status."""

    name = "core"

    def __init__(self, board, *, device_id=DEVICE_ID, version=None, git_hash=None,
                 clk_hz=CLK_HZ, loopback_depth=LOOPBACK_DEPTH):
        super().__init__(board)
        self.device_id = device_id
        self.version = REGISTER_MAP["core.version"].init if version is None else version
        self.git_hash = git_hash_word() if git_hash is None else git_hash
        self.clk_hz = clk_hz
        self.loopback = LoopbackChannel(self.bank, loopback_depth)
        self._t0 = time.monotonic()
        self.bank.on_read["core.cycles"] = self._cycles
        self.bank.on_read["core.status"] = lambda index: self.loopback.free()
        self.bank.on_write["core.command"] = self._command
        self.reset()

    def reset(self):
        platform = REGISTER_MAP["core.platform"].layout.const(
            {"role": Role.LINK, "channels": 1, "dirty": 0}).as_value().value
        self.bank.set("core.id", self.device_id)
        self.bank.set("core.version", self.version)
        self.bank.set("core.git_hash", self.git_hash)
        self.bank.set("core.platform", platform)
        self.bank.set("core.clk_hz", self.clk_hz)
        self.loopback.reset()
        self._t0 = time.monotonic()

    def channels(self):
        return [self.loopback]

    def _cycles(self, index):
        return int((time.monotonic() - self._t0) * self.clk_hz) & 0xFFFF_FFFF

    def _command(self, value, index):
        if value & 1:
            self.board.link.clear()


class LinkBlock(BlockModel):
    """``link``: the frame counters; ``count(name)`` bumps one, ``clear()`` zeroes them all."""

    name = "link"
    COUNTERS = ("rx_frames", "tx_frames", "crc_errors", "cobs_errors", "uart_errors", "bad_requests")

    def count(self, name, n=1):
        """Add ``n`` to counter ``link.<name>`` (wrapping at 32 bits)."""
        path = f"link.{name}"
        self.bank.set(path, self.bank.get(path) + n)

    def clear(self):
        """Zero every counter of the block."""
        for name in self.COUNTERS:
            self.bank.set(f"link.{name}", 0)

    reset = clear


class ChoicesChannel(StreamChannelModel):
    """CHOICES: Alice's per-slot choices, host to device, into the modulator's FIFO."""

    channel = StreamChannel.CHOICES.value

    def __init__(self, alice):
        self.alice = alice

    def enabled(self):
        return True

    def free(self):
        self.alice.catch_up()
        return self.alice.depth - len(self.alice.fifo)

    def put(self, data):
        self.alice.catch_up()
        self.alice.fifo += data


class ReportsChannel(StreamChannelModel):
    """REPORTS: Alice's START/UNDERFLOW/STOP records, device to host."""

    channel = StreamChannel.REPORTS.value

    def __init__(self, alice):
        self.alice = alice
        self.queue = bytearray()

    def pull(self, limit):
        self.alice.catch_up()
        out = bytes(self.queue[:limit])
        del self.queue[:len(out)]
        return out

    def reset(self):
        self.queue.clear()


class AliceBlock(BlockModel):
    """``modulator``: Alice's slot clock, choice FIFO, LFSR pattern, counters and reports.

    Plays the slots the gateware would (``gateware.spec.modulator``): with ``clock`` (a callable
    returning seconds, default ``time.monotonic``) a run plays one slot every
    ``slot_period / clk_hz`` seconds of model time, caught up whenever the host touches the
    board; with ``clock=None`` slots are played only by ``advance(n)`` (for scoreboards). With
    ``trace`` a list, every slot played appends ``(state, intensity, laser, sync)`` to it, the
    pins' values in that slot. The report queue is unbounded, so ``reports_lost`` stays 0.
    """

    name = "modulator"

    def __init__(self, board, *, choices_depth=4096, clk_hz=CLK_HZ, clock=time.monotonic,
                 trace=None):
        super().__init__(board)
        self.depth = choices_depth
        self.clk_hz = clk_hz
        self.clock = clock
        self.trace = trace
        self.fifo = bytearray()
        self.choices = ChoicesChannel(self)
        self.reports = ReportsChannel(self)
        self.bank.on_write["modulator.control"] = self._control
        self.bank.on_write["modulator.command"] = self._command
        self.bank.on_read["modulator.status"] = self._status
        for path in ("modulator.slot_lo", "modulator.underflow_slots"):
            self.bank.on_read[path] = self._caught_up(path)
        self.reset()

    def reset(self):
        self.fifo.clear()
        self.reports.reset()
        self.half = 0             # nibbles of the FIFO's head byte already played
        self.slot_no = 0          # number of the next slot
        self.running = False
        self.lfsr_mode = False
        self.lfsr = 1
        self.run_first = 0
        self.frame_idx = 0
        self.uf_first = None      # first slot of the underflow in progress
        self.uf_count = 0
        self.t0 = 0.0             # model time of the run's first slot
        self.bank.set("modulator.choices_depth", self.depth)
        platform = REGISTER_MAP["core.platform"].layout.const(
            {"role": Role.ALICE, "channels": 3, "dirty": 0}).as_value().value
        self.bank.set("core.platform", platform)

    def channels(self):
        return [self.choices, self.reports]

    # -- register hooks ---------------------------------------------------------------------------

    def _caught_up(self, path):
        def read(index):
            self.catch_up()
            return self.bank.get(path, index)
        return read

    def _status(self, index):
        self.catch_up()
        layout = REGISTER_MAP["modulator.status"].layout
        return layout.const({"running": int(self.running), "lfsr": int(self.lfsr_mode),
                             "underflow": int(self.uf_first is not None),
                             "choices_free": self.depth - len(self.fifo)}).as_value().value

    def _control(self, value, index):
        self.catch_up()
        fields = REGISTER_MAP["modulator.control"].layout.from_bits(value)
        if fields.run and not self.running:
            self._start(bool(fields.lfsr))
        elif not fields.run and self.running:
            self._stop()

    def _command(self, value, index):
        self.catch_up()
        fields = REGISTER_MAP["modulator.command"].layout.from_bits(value)
        if fields.clear_counters:
            self.bank.set("modulator.underflow_slots", 0)
            self.bank.set("modulator.reports_lost", 0)
        if fields.flush and not self.running:
            self.fifo.clear()
            self.half = 0
        if fields.snapshot:
            self.bank.set("modulator.slot_lo", self.slot_no & 0xFFFF_FFFF)
            self.bank.set("modulator.slot_hi", self.slot_no >> 32)

    # -- slots ------------------------------------------------------------------------------------

    @property
    def period(self):
        """Return the slot length in clock cycles, as played."""
        return max(self.bank.get("modulator.slot_period"), MIN_SLOT_PERIOD)

    def _report(self, kind, first, count):
        value = ReportLayout.const({"kind": kind, "lfsr": int(self.lfsr_mode), "first_slot": first,
                                    "count": count}).as_value().value
        self.reports.queue += value.to_bytes(REPORT_BYTES, "little")

    def _start(self, lfsr):
        self.running = True
        self.lfsr_mode = lfsr
        self.lfsr = self.bank.get("modulator.lfsr_seed") or 1
        self.run_first = self.slot_no
        self.frame_idx = 0
        self.t0 = self.clock() if self.clock else 0.0
        self._report(ReportKind.START, self.run_first, 0)
        self._play(1)

    def _stop(self):
        self._end_underflow()
        self.running = False
        self._report(ReportKind.STOP, self.run_first, self.slot_no - self.run_first)

    def _end_underflow(self):
        if self.uf_first is not None:
            self._report(ReportKind.UNDERFLOW, self.uf_first, self.uf_count)
            self.uf_first = None

    def catch_up(self):
        """Play the slots whose start time has passed on ``clock``."""
        if self.running and self.clock is not None:
            due = int((self.clock() - self.t0) * self.clk_hz / self.period) + 1
            self._play(due - (self.slot_no - self.run_first))

    def advance(self, slots):
        """Play ``slots`` more slots of the running run (a stopped board plays none)."""
        if self.running:
            self._play(slots)

    def _play(self, n):
        if n <= 0:
            return
        if self.slot_listeners:
            self._tell_slot_listeners(n)
        if self.trace is not None or self.lfsr_mode:
            for _ in range(n):
                self._play_one()
            return
        # Fast path: n slots, the first ``have`` of them with a choice, the rest underflow.
        have = min(n, 2 * len(self.fifo) - self.half)
        if have:
            self._end_underflow()
            used = self.half + have
            del self.fifo[:used // 2]
            self.half = used % 2
        self._underflow(self.slot_no + have, n - have)
        self.frame_idx = (self.frame_idx + n) % max(self.bank.get("modulator.frame_slots"), 1)
        self.slot_no += n

    def _underflow(self, first, count):
        if count <= 0:
            return
        if self.uf_first is None:
            self.uf_first, self.uf_count = first, 0
        self.uf_count += count
        self.bank.set("modulator.underflow_slots",
                      self.bank.get("modulator.underflow_slots") + count)

    def _play_one(self):
        if self.lfsr_mode:
            nibble = self.lfsr & 0xF
            for _ in range(4):
                self.lfsr = lfsr_step(self.lfsr)
        elif self.fifo:
            nibble = (self.fifo[0] >> (4 * self.half)) & 0xF
            self.half ^= 1
            if not self.half:
                del self.fifo[0]
            self._end_underflow()
        else:
            nibble = None
            self._underflow(self.slot_no, 1)
        frame_slots = self.bank.get("modulator.frame_slots")
        sync = int(self.frame_idx == 0)
        self.frame_idx = 0 if self.frame_idx + 1 >= frame_slots else self.frame_idx + 1
        self.slot_no += 1
        if self.trace is not None:
            if nibble is None:
                self.trace.append((0, Intensity.VACUUM.value, 0, sync))
            else:
                intensity = nibble >> 2
                if intensity == Intensity.RESERVED.value:
                    intensity = Intensity.VACUUM.value
                self.trace.append((choice_state(nibble), intensity, int(choice_fires(nibble)), sync))


    # -- played-slot listeners (issue 5: hil.fibre drives the optics model from them) -------------

    #: Callables ``f(first_slot, nibbles, underflow, frame_idx, frame_slots)``, told of every batch
    #: of slots just before it is played: ``nibbles`` (uint8 array) are the choices of the first
    #: ``len(nibbles)`` slots from ``first_slot``, then ``underflow`` slots go out as vacuum with
    #: the laser off; ``frame_idx`` is the first slot's index in its frame of ``frame_slots``.
    #: Called under the board's lock: a listener only queues the batch.
    slot_listeners = ()

    def _tell_slot_listeners(self, n):
        import numpy as np
        if self.lfsr_mode:
            nibbles = np.array(lfsr_choices(self.lfsr, n), dtype=np.uint8)
        else:
            have = min(n, 2 * len(self.fifo) - self.half)
            raw = np.frombuffer(bytes(self.fifo[:(self.half + have + 1) // 2]), dtype=np.uint8)
            nibbles = np.stack([raw & 0xF, raw >> 4], axis=1).reshape(-1)[self.half:self.half + have]
        frame_slots = max(self.bank.get("modulator.frame_slots"), 1)
        for listener in self.slot_listeners:
            listener(self.slot_no, nibbles, n - len(nibbles), self.frame_idx, frame_slots)


class EventsChannel(StreamChannelModel):
    """EVENTS: Bob's 32-bit records, device to host, most significant byte first."""

    channel = StreamChannel.EVENTS.value

    def __init__(self):
        self.queue = bytearray()

    def pull(self, limit):
        out = bytes(self.queue[:limit])
        del self.queue[:len(out)]
        return out

    def reset(self):
        self.queue.clear()


class BobBlock(BlockModel):
    """``tagger``: Bob's time tagger, classified by the golden model (``hil.tagger_model``).

    ``inject(clicks, syncs, until)`` hands the block a stretch of detector clicks and sync edges
    (times in bins, one list per channel) as the pins would see them; while
    ``tagger.control.enable`` is 1 it goes to the run in progress (``TaggerStream``, started at
    the first light after a ``clear``), whose state carries from stretch to stretch as the
    gateware's does: stretches on one time line give exactly the records, counters and
    histograms of one run over all their light, whatever the split. The items that became
    final are queued on EVENTS and counted; an open frame and the last open slot wait for
    later light or for ``idle()``: the light stopped and the tagger's clock runs on, as a
    board's does, until the open frame has ended with sync lost and the event FIFO has sent
    everything (``idle(bins)``: a given time). Light that comes earlier than the time the
    tagger has reached (a source whose clock stood still while the tagger idled) is moved
    later by whole clocks, and stays moved: the tagger's time only runs forward.

    ``gap_bins`` (default None: one time line) plays each stretch as the RTL twin's click
    player does (``hil.twin.TwinClicks``): moved to start after the previous stretch, a whole
    number of clocks later, and followed by ``gap_bins`` of silence, so with a gap of more than
    a frame each stretch is a run of its own, as on the twin (bit for bit while Bob's dead
    times are shorter than the gap).

    Items go to EVENTS through the gateware's event FIFO of ``fifo_words`` words
    (``hil.tagger_model.PacedQueue``). With ``baud`` (the board's UART rate, e.g. the RTL
    twin's ``hil.twin.BAUD``) it is drained at the link's record rate in the tagger's time: the
    record bytes that link carries in full EVENTS frames (``bench.tagger.link_limit``) at the
    board's ``clk_hz``. Light above that rate fills it: items are dropped, counted in
    ``dropped_events`` / ``dropped_markers`` and reported by OVERFLOW records, as on the
    gateware (with its hold until the FIFO is half empty). Below the limit nothing drops and
    the records equal the gateware's bit for bit; above it the drop points are the model's own
    (the gateware's depend on its item queue and UART timing) and the two agree by accounting:
    counters, OVERFLOW records and detections reconcile. ``baud=None`` (the default) is a link
    as fast as the host reads it (the model's own TCP transport): the FIFO never fills. That is
    what a bench on simulated time whose Alice is fed as fast as her host streams (``hil.demo``)
    needs; a bench that stands for the hardware gives the baud. The host side of EVENTS (the
    TCP socket) is never paced.
    """

    name = "tagger"

    def __init__(self, board, *, samples=2, fifo_words=512, baud=None, gap_bins=None,
                 hist_bins=HIST_BINS):
        super().__init__(board)
        self.samples = samples
        self.fifo_words = fifo_words
        self.hist_bins = hist_bins           # the board's (TaggerParams); 0: no histograms
        self.baud = None if baud is None else int(baud)
        self.gap_bins = None if gap_bins is None else int(gap_bins)
        self.stream = None
        self.offset = 0                      # bins added to injected light (time runs forward)
        self.events = EventsChannel()
        self.bank.on_write["tagger.command"] = self._command
        self.bank.on_read["tagger.status"] = self._status
        self.bank.on_read["tagger.hist"] = self._hist_word
        self.reset()

    def reset(self):
        from gateware.spec.tagger import TaggerInfo
        self.events.reset()
        self._clear()
        self.bank.set("tagger.info", TaggerInfo.const({
            "samples": self.samples, "channels": CHANNELS, "hist_bins": self.hist_bins,
            "fifo_words_div16": self.fifo_words // 16}).as_value().value)
        platform = REGISTER_MAP["core.platform"].layout.const(
            {"role": Role.BOB, "channels": 2, "dirty": 0}).as_value().value
        self.bank.set("core.platform", platform)

    def channels(self):
        return [self.events]

    def _hist_word(self, index):
        """Element ``ch * hist_bins + bin`` as the gateware's ``PhaseHistogram`` of
        ``hist_bins`` bins serves it (bins past the last are not counted; 0 past the end)."""
        ch, b = divmod(index, self.hist_bins) if self.hist_bins else (CHANNELS, 0)
        return int(self.hist[ch, b]) & 0xFFFF_FFFF if ch < CHANNELS else 0

    def _clear(self):
        self.hist = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        self.stream = None                   # a clear starts a new run at frame 0
        self.fifo = self._new_fifo()
        for name in CHANNEL_COUNTERS:
            for ch in range(CHANNELS):
                self.bank.set(f"tagger.{name}", 0, ch)
        for name in GLOBAL_COUNTERS:
            self.bank.set(f"tagger.{name}", 0)

    def _new_fifo(self):
        """Return an empty event FIFO of ``fifo_words`` words drained at the link's record rate
        (``bench.tagger.link_limit`` at ``baud``: full EVENTS frames) in the tagger's bins, or
        at once without ``baud``."""
        from hil.tagger_model import PacedQueue
        if self.baud is None:
            return PacedQueue(self.fifo_words, 0)
        return PacedQueue(self.fifo_words, self.word_bins())

    def word_bins(self):
        """Return the tagger bins the link takes to send one record word at ``baud`` (None
        without ``baud``)."""
        if self.baud is None:
            return None
        from bench.tagger import link_limit
        record_bytes_per_s = link_limit(self.baud)["limit_record_bytes_per_s"]
        return 4 * self.board.core.clk_hz * self.samples / record_bytes_per_s

    def _command(self, value, index):
        if REGISTER_MAP["tagger.command"].layout.from_bits(value).clear:
            self._clear()

    def _status(self, index):
        return REGISTER_MAP["tagger.status"].layout.const(
            {"fifo_bytes": min(len(self.events.queue), 0xFFFF)}).as_value().value

    @property
    def enabled(self):
        """Return True while ``tagger.control.enable`` is 1."""
        return bool(REGISTER_MAP["tagger.control"].layout.from_bits(
            self.bank.get("tagger.control")).enable)

    def config(self):
        """Return the registers as a ``TaggerConfig``."""
        from hil.tagger_model import TaggerConfig
        gate = REGISTER_MAP["tagger.gate"].layout.from_bits(self.bank.get("tagger.gate"))
        return TaggerConfig(
            samples=self.samples, slot_period=self.bank.get("tagger.slot_period"),
            frame_slots=self.bank.get("tagger.frame_slots"),
            sync_delay=self.bank.get("tagger.sync_delay"), gate_start=int(gate.start),
            gate_width=int(gate.width), hist_shift=self.bank.get("tagger.hist_shift"),
            dead_time=[self.bank.get("tagger.dead_time", ch) for ch in range(CHANNELS)])

    def inject(self, clicks, syncs, until=None):
        """Classify a stretch of ``clicks`` and ``syncs`` (bins) of the light before ``until``
        (default: just after its latest time); return the TaggerResult of the items that became
        final, or None when the tagger is disabled (the stretch is ignored, as the gateware
        would)."""
        with self.board.lock:
            if not self.enabled:
                return None
            stream = self._stream()
            times = [np.asarray(c, dtype=np.int64) for c in [*clicks, syncs]]
            present = [t for t in times if t.size]
            earliest = min(int(t.min()) for t in present) if present else None
            if self.gap_bins is not None:
                # the RTL twin's way: the stretch starts after the previous one's gap (a whole
                # number of clocks later), then gap_bins of silence
                self.offset = 0
            if earliest is not None and stream.until > earliest + self.offset:
                n = self.samples
                self.offset += -(-(stream.until - earliest - self.offset) // n) * n
            times = [t + self.offset for t in times]
            first = stream.feed(times[:CHANNELS], times[CHANNELS],
                                None if until is None else int(until) + self.offset)
            if self.gap_bins is None:
                return self._commit(first)
            second = stream.feed([()] * CHANNELS, (), stream.until + self.gap_bins)
            return self._commit(_joined(first, second))

    def idle(self, bins=None):
        """Let time pass without light; return the TaggerResult of what became final, or None
        when the tagger is disabled. ``bins`` None: the light stopped, the clock runs on until
        the open frame has ended (sync lost), its last slot is flushed and the event FIFO has
        sent every word and reported its drops, as on a board whose light stops (a second call
        adds nothing); else ``bins`` of time."""
        with self.board.lock:
            if not self.enabled:
                return None
            stream = self._stream()
            base = stream.until if stream.until > 0 else 0
            if bins is not None:
                return self._commit(stream.feed([()] * CHANNELS, (), base + int(bins)))
            results = []
            while True:
                end = self._quiet_time()
                if end <= stream.until:
                    break
                results.append(self._commit(stream.feed([()] * CHANNELS, (), end)))
            if not results:
                return self._commit(stream.feed([()] * CHANNELS, (), max(base, stream.until)))
            out = results[0]
            for r in results[1:]:
                out = _joined(out, r)
            return out

    def _quiet_time(self):
        """Return the first time (bins) by which, without more light, the run in progress has
        nothing open: its last frame ended, its items flushed, the FIFO sent and its drops
        reported."""
        stream, fifo = self.stream, self.fifo
        end = stream.until
        if stream.origins.size and stream.last_open:
            end = max(end, int(stream.origins[-1]) + stream.config.frame_bins + 1)
        for t in (stream.pending["time"], stream.markers["time"]):
            if t.size:
                end = max(end, int(t.max()) + stream.config.slot_period + 1)
        if fifo.word_bins:
            end = max(end, int(np.ceil(fifo.busy)) + 1)
            if fifo.gap[0] or fifo.gap[1]:
                end = max(end, fifo._room_time() + 1)
        return end

    def _stream(self):
        """Return the tagger run in progress (started at the first light after a clear), with
        the registers as they are now."""
        from hil.tagger_model import TaggerModel
        cfg = self.config()
        if self.stream is None:
            self.stream = TaggerModel(cfg).stream(first_frame=0)
        self.stream.config = cfg
        return self.stream

    def _commit(self, result):
        """Queue a TaggerResult's items through the event FIFO (``PacedQueue``: records, drops)
        and add its counts to the counters and histograms; return it with the words queued and
        the drops counted."""
        words, _, dropped_events, dropped_markers = self.fifo.push(result.items, self.stream.until)
        result.words = words
        result.counters["dropped_events"] += dropped_events
        result.counters["dropped_markers"] += dropped_markers
        self.events.queue += words.astype(">u4").tobytes()
        for name, value in result.counters.items():
            if name in CHANNEL_COUNTERS:
                for ch in range(CHANNELS):
                    self.bank.set(f"tagger.{name}",
                                  self.bank.get(f"tagger.{name}", ch) + int(value[ch]), ch)
            else:
                self.bank.set(f"tagger.{name}", self.bank.get(f"tagger.{name}") + int(value))
        self.hist += result.hist
        return result


def _joined(a, b):
    """Return one TaggerResult of two consecutive ones."""
    from hil.tagger_model import TaggerResult
    return TaggerResult(np.concatenate([a.words, b.words]), np.concatenate([a.items, b.items]),
                        {k: a.counters[k] + b.counters[k] for k in a.counters}, a.hist + b.hist)


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
