"""Bob's board model: the tagger block (``BobBlock``, classified by ``hil.tagger_model``) with
its EVENTS channel. Part of ``hil.model``."""

import numpy as np

from gateware.spec.protocol import StreamChannel
from gateware.spec.registers import REGISTER_MAP, Role
from gateware.spec.tagger import CHANNEL_COUNTERS, CHANNELS, GLOBAL_COUNTERS, HIST_BINS

from .model_core import BlockModel, QueuedChannel

__all__ = ["EventsChannel", "BobBlock"]

class EventsChannel(QueuedChannel):
    """EVENTS: Bob's 32-bit records, device to host, most significant byte first."""

    channel = StreamChannel.EVENTS.value


class BobBlock(BlockModel):
    """``tagger``: Bob's time tagger, classified by the golden model (``hil.tagger_model``).

    ``inject(clicks, syncs, until)`` hands the block a stretch of detector clicks and sync edges
    (times in bins, one list per channel) as the pins would see them; while
    ``tagger.control.enable`` is 1 it goes to the run in progress (``TaggerStream``, started at
    the first light after a ``clear``); while it is 0 the light is ignored and only the
    tagger's time moves on. A write of 0 stops the run where its time has reached (the next
    clock): the open event is flushed and sync dropped, as on the gateware
    (``TaggerStream.disable``); a write of 1 takes light again from there. The run's state
    carries from stretch to stretch as the gateware's does: stretches on one time line give
    exactly the records, counters and histograms of one run over all their light, whatever
    the split. The items that became
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

    ``tagger`` (a ``gateware.cores.tagger.TaggerParams``, default the gateware's default) is
    what the board builds its tagger with, e.g. ``boards.get_board("icebreaker").tagger``:
    its ``hist_bins`` (0: no phase histograms, ``tagger.hist`` reads 0 and the host builds
    them from the records) and ``fifo_words``, reported in ``tagger.info``; ``hist_bins`` and
    ``fifo_words``, if given, override those two.

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

    def __init__(self, board, *, samples=2, tagger=None, fifo_words=None, hist_bins=None,
                 baud=None, gap_bins=None):
        from gateware.cores.tagger import TaggerParams
        tagger = tagger or TaggerParams()
        super().__init__(board)
        self.samples = samples
        self.fifo_words = tagger.fifo_words if fifo_words is None else fifo_words
        self.hist_bins = tagger.hist_bins if hist_bins is None else hist_bins   # 0: none
        TaggerParams(hist_bins=self.hist_bins, fifo_words=self.fifo_words)       # checks
        self.baud = None if baud is None else int(baud)
        self.gap_bins = None if gap_bins is None else int(gap_bins)
        self.stream = None
        self.offset = 0                      # bins added to injected light (time runs forward)
        self.events = EventsChannel()
        self.bank.on_write["tagger.command"] = self._command
        self.bank.on_write["tagger.control"] = self._control
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

    def _control(self, value, index):
        """``tagger.control`` written: a stop flushes the open event and drops sync, at the
        time the tagger has reached (the next clock); a start takes light again from there."""
        enable = bool(REGISTER_MAP["tagger.control"].layout.from_bits(value).enable)
        if self.stream is None or enable == self.stream.enabled:
            return
        if enable:
            self.stream.enable()
        else:
            self._commit(self.stream.disable())

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
        would, and the tagger's time moves past it)."""
        with self.board.lock:
            if not self.enabled and self.stream is None:
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
            result = stream.feed(times[:CHANNELS], times[CHANNELS],
                                 None if until is None else int(until) + self.offset)
            if self.gap_bins is not None:
                from hil.tagger_model import join_results
                result = join_results(result, stream.feed([()] * CHANNELS, (),
                                                          stream.until + self.gap_bins))
            # stopped: the stream ignored the light and only its time moved on
            return self._commit(result) if self.enabled else None

    def idle(self, bins=None):
        """Let time pass without light; return the TaggerResult of what became final, or None
        when the tagger is disabled and has no run since the clear. ``bins`` None: the light stopped, the clock runs on until
        the open frame has ended (sync lost), its last slot is flushed and the event FIFO has
        sent every word and reported its drops, as on a board whose light stops (a second call
        adds nothing); else ``bins`` of time."""
        with self.board.lock:
            if not self.enabled and self.stream is None:
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
            from hil.tagger_model import join_results
            out = results[0]
            for r in results[1:]:
                out = join_results(out, r)
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
