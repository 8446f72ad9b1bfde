"""Bob's time tagger from the host: configure by name, start/stop, counters, histograms, records.

``Tagger(device)`` drives the ``tagger`` block of a board (hardware, RTL twin or behavioural
model, all through ``controller.device.Device``). ``RecordDecoder`` turns the EVENTS byte stream
into numpy arrays, one row per detection (absolute frame, slot, mask, phase), and lists the
markers and overflow gaps where they fall; ``reconcile`` checks the counters against what arrived.
Field positions come from the spec's record layouts (``gateware.spec.tagger``).
"""

from dataclasses import dataclass, field

import numba
import numpy as np

from gateware.spec.protocol import StreamChannel
from gateware.spec.tagger import (
    CHANNELS, CHANNEL_COUNTERS, FRAME_BITS, GLOBAL_COUNTERS, HIST_BINS, PHASE_BITS,
    RecordKind, MarkerCode, DetectionRecord, FrameRecord, OverflowRecord, MarkerRecord,
    field_slice,
)

__all__ = ["Records", "RecordDecoder", "decode", "Tagger", "Reconciliation", "reconcile",
           "SETTINGS"]

#: Settings ``Tagger.configure`` takes, and the register each one writes.
SETTINGS = {
    "slot_period": "tagger.slot_period",
    "frame_slots": "tagger.frame_slots",
    "sync_delay": "tagger.sync_delay",
    "gate_start": "tagger.gate",
    "gate_width": "tagger.gate",
    "hist_shift": "tagger.hist_shift",
    "dead_time": "tagger.dead_time",
    "channel_map": "tagger.channel_map",
}

# Field positions as (shift, mask) module constants: numba folds them into the decode loop.
def _sm(layout, name):
    offset, width = field_slice(layout, name)
    return offset, (1 << width) - 1


_KIND_SHIFT = field_slice(DetectionRecord, "kind")[0]
_MASK_S, _MASK_M = _sm(DetectionRecord, "mask")
_SLOT_S, _SLOT_M = _sm(DetectionRecord, "slot")
_PHASE_S, _PHASE_M = _sm(DetectionRecord, "phase")
_FRAME_S, _FRAME_M = _sm(FrameRecord, "frame")
_EV_S, _EV_M = _sm(OverflowRecord, "events")
_MK_S, _MK_M = _sm(OverflowRecord, "markers")
_CODE_S, _CODE_M = _sm(MarkerRecord, "code")
_MFRAME_S, _MFRAME_M = _sm(MarkerRecord, "frame")
_DET, _FRM, _OVF = RecordKind.DETECTION.value, RecordKind.FRAME.value, RecordKind.OVERFLOW.value
assert _FRAME_M == (1 << FRAME_BITS) - 1


@numba.njit(cache=True, nogil=True)
def _decode(words, frame_in, epoch_in, prev_in, out_frame, out_slot, out_mask, out_phase, aux):
    """One pass over the words: detections into the out_* arrays, markers and gaps into ``aux``
    rows ``(detection index, kind, a, b)``. Returns (detections, aux rows, frame, epoch, prev)."""
    nd = 0
    na = 0
    frame = frame_in
    epoch = epoch_in
    prev = prev_in
    for i in range(words.size):
        w = np.uint32(words[i])
        kind = w >> _KIND_SHIFT
        if kind == _DET:
            out_frame[nd] = frame
            out_slot[nd] = (w >> _SLOT_S) & _SLOT_M
            out_mask[nd] = (w >> _MASK_S) & _MASK_M
            out_phase[nd] = (w >> _PHASE_S) & _PHASE_M
            nd += 1
        elif kind == _FRM:
            raw = np.int64((w >> _FRAME_S) & _FRAME_M)
            if prev >= 0 and raw < prev:
                epoch += _FRAME_M + 1       # the frame number wrapped
            prev = raw
            frame = epoch + raw
        elif kind == _OVF:
            aux[na, 0] = nd
            aux[na, 1] = kind
            aux[na, 2] = (w >> _EV_S) & _EV_M
            aux[na, 3] = (w >> _MK_S) & _MK_M
            na += 1
        else:
            aux[na, 0] = nd
            aux[na, 1] = kind
            aux[na, 2] = (w >> _CODE_S) & _CODE_M
            aux[na, 3] = (w >> _MFRAME_S) & _MFRAME_M
            na += 1
    return nd, na, frame, epoch, prev


@dataclass
class Records:
    """Decoded records. Detections: ``frame`` (absolute, int64; -1 before any FRAME record),
    ``slot``, ``mask`` (bit ch: channel ch clicked), ``phase`` (bins from the slot start).
    ``markers``: rows ``(index, code, frame_low)``, ``index`` being the number of detections
    before it and ``code`` a MarkerCode value. ``gaps``: rows ``(index, events, markers)`` from
    OVERFLOW records: that many detections and markers are missing before detection ``index``."""
    frame: np.ndarray
    slot: np.ndarray
    mask: np.ndarray
    phase: np.ndarray
    markers: np.ndarray
    gaps: np.ndarray
    words: int = 0

    def __len__(self):
        return self.frame.size

    @property
    def dropped_events(self):
        """Return the detections the OVERFLOW records say are missing."""
        return int(self.gaps[:, 1].sum()) if self.gaps.size else 0

    @property
    def dropped_markers(self):
        """Return the markers the OVERFLOW records say are missing."""
        return int(self.gaps[:, 2].sum()) if self.gaps.size else 0

    def count_markers(self, code):
        """Return how many markers of ``code`` (MarkerCode) arrived."""
        return int((self.markers[:, 1] == MarkerCode(code).value).sum()) if self.markers.size else 0

    @staticmethod
    def concat(parts):
        """Return the Records of ``parts`` (decoded in order from one stream) as one."""
        parts = list(parts)
        offsets = np.cumsum([0] + [len(p) for p in parts[:-1]])
        def rows(name):
            arrays = [getattr(p, name) + np.array([o, 0, 0]) for p, o in zip(parts, offsets)]
            return np.concatenate(arrays) if arrays else np.zeros((0, 3), dtype=np.int64)
        return Records(*(np.concatenate([getattr(p, n) for p in parts])
                         for n in ("frame", "slot", "mask", "phase")),
                       rows("markers"), rows("gaps"), sum(p.words for p in parts))


class RecordDecoder:
    """Decode an EVENTS byte stream fed in chunks of any size (records may straddle chunks).

    Frame numbers are unwrapped across the 2**FRAME_BITS wrap (they only grow until a clear;
    call ``reset()`` after ``Tagger.clear()``).
    """

    def __init__(self):
        self.reset()

    def reset(self):
        """Forget the partial record, the current frame and the unwrap state."""
        self._rest = b""
        self._frame = -1
        self._epoch = 0
        self._prev = -1

    def feed(self, data):
        """Return the Records completed by ``data`` (bytes)."""
        data = self._rest + bytes(data)
        whole = len(data) // 4 * 4
        self._rest = data[whole:]
        return self.decode_words(np.frombuffer(data[:whole], dtype=">u4"))

    def decode_words(self, words):
        """Return the Records of ``words`` (uint32 array of whole records), continuing the state."""
        words = np.ascontiguousarray(words, dtype=np.uint32)   # native order for the loop
        n = words.size
        frame = np.empty(n, dtype=np.int64)
        slot = np.empty(n, dtype=np.uint16)
        mask = np.empty(n, dtype=np.uint8)
        phase = np.empty(n, dtype=np.uint16)
        aux = np.empty((n, 4), dtype=np.int64)
        nd, na, self._frame, self._epoch, self._prev = _decode(
            words, self._frame, self._epoch, self._prev, frame, slot, mask, phase, aux)
        aux = aux[:na]
        gap_rows = aux[:, 1] == RecordKind.OVERFLOW.value
        return Records(frame[:nd], slot[:nd], mask[:nd], phase[:nd],
                       aux[~gap_rows][:, [0, 2, 3]], aux[gap_rows][:, [0, 2, 3]], n)


def decode(data):
    """Return the Records of a whole EVENTS byte string (or uint32 word array)."""
    decoder = RecordDecoder()
    if isinstance(data, np.ndarray):
        return decoder.decode_words(data)
    return decoder.feed(data)


@dataclass
class Reconciliation:
    """Counters against received records. ``problems`` lists every mismatch in words."""
    received_events: int
    reported_dropped: int
    counted_events: int
    counted_dropped: int
    problems: list = field(default_factory=list)

    @property
    def ok(self):
        """Return True when every count agrees."""
        return not self.problems


def reconcile(counters, records):
    """Check ``counters`` (``Tagger.counters()``) against ``records`` (everything received since
    the clear, the stream drained). Returns a Reconciliation."""
    problems = []
    received = len(records)
    if counters["events"] != received + counters["dropped_events"]:
        problems.append(f"events: the tagger formed {counters['events']}, the host received "
                        f"{received} and {counters['dropped_events']} were dropped; "
                        f"{counters['events'] - received - counters['dropped_events']} unaccounted")
    if records.dropped_events != counters["dropped_events"]:
        problems.append(f"overflow records report {records.dropped_events} dropped detections, "
                        f"the counter {counters['dropped_events']}")
    markers = len(records.markers)
    formed = counters["sync_losses"] + counters["sync_acquired"]
    if formed != markers + counters["dropped_markers"]:
        problems.append(f"markers: {formed} formed, {markers} received, "
                        f"{counters['dropped_markers']} dropped")
    for ch in range(CHANNELS):
        got = int(np.count_nonzero(records.mask & (1 << ch)))
        if got > counters["accepted"][ch]:
            problems.append(f"channel {ch}: {got} detections received but only "
                            f"{counters['accepted'][ch]} clicks accepted")
    raw = sum(counters["raw"])
    parts = sum(counters["dead"]) + sum(counters["out_of_gate"]) + sum(counters["accepted"]) \
        + counters["no_sync"]
    if raw != parts:
        problems.append(f"clicks: {raw} raw but dead + no-sync + out-of-gate + accepted = {parts}")
    return Reconciliation(received, records.dropped_events, counters["events"],
                          counters["dropped_events"], problems)


class Tagger:
    """Bob's tagger on ``device`` (a ``controller.device.Device``)."""

    def __init__(self, device):
        self.device = device
        self.decoder = RecordDecoder()
        info = device.fields("tagger.info")
        self.samples = int(info["samples"])
        #: Phase histogram bins per channel in the gateware (``tagger.info``); 0: none, and
        #: ``histograms()`` builds them from the DETECTION records (``hist_source``).
        self.hist_bins = int(info["hist_bins"])
        self.clk_hz = device.read("core.clk_hz")
        # Without hardware histograms: detections per (channel, phase) since the clear, from
        # every record decoded; records pulled by histograms() wait for read_records().
        self._phase_counts = np.zeros((CHANNELS, 1 << PHASE_BITS), dtype=np.int64)
        self._pending = []

    @property
    def hist_source(self):
        """Return where ``histograms()`` comes from: ``"hardware"`` (the gateware's histograms
        of clicks) or ``"records"`` (built on the host from the DETECTION records)."""
        return "hardware" if self.hist_bins else "records"

    @property
    def bin_s(self):
        """Return the bin width in seconds: one clock period / samples per clock."""
        return 1.0 / (self.clk_hz * self.samples)

    def configure(self, **settings):
        """Write settings by name (``SETTINGS``); times are in bins. ``dead_time`` takes one
        value or one per channel; ``channel_map`` a (basis, bit) pair per channel."""
        unknown = set(settings) - set(SETTINGS)
        if unknown:
            raise KeyError(f"unknown tagger setting(s) {sorted(unknown)}; settings are "
                           f"{', '.join(SETTINGS)}")
        period = settings.get("slot_period")
        if period is not None and not self.samples <= period < 1 << PHASE_BITS:
            raise ValueError(f"slot_period {period} bins: must be from {self.samples} (one clock) "
                             f"to {(1 << PHASE_BITS) - 1}")
        dev = self.device
        for name in ("slot_period", "frame_slots", "sync_delay", "hist_shift"):
            if name in settings:
                dev.write(SETTINGS[name], int(settings[name]))
        if "gate_start" in settings or "gate_width" in settings:
            dev.update("tagger.gate", **{k.split("_")[1]: int(settings[k])
                                         for k in ("gate_start", "gate_width") if k in settings})
        if "dead_time" in settings:
            dead = settings["dead_time"]
            dead = [dead] * CHANNELS if np.isscalar(dead) else list(dead)
            for ch, value in enumerate(dead):
                dev.write("tagger.dead_time", int(value), index=ch)
        if "channel_map" in settings:
            for ch, (basis, bit) in enumerate(settings["channel_map"]):
                dev.write("tagger.channel_map", index=ch, basis=int(basis), bit=int(bit))

    def channel_map(self):
        """Return ``[(basis, bit)]`` per channel as configured."""
        return [(int(f["basis"]), int(f["bit"]))
                for f in (self.device.fields("tagger.channel_map", index=ch)
                          for ch in range(CHANNELS))]

    def start(self):
        """Enable the tagger."""
        self.device.write("tagger.control", enable=1)

    def stop(self):
        """Disable the tagger (its open event is flushed and sync dropped)."""
        self.device.write("tagger.control", enable=0)

    def clear(self):
        """Zero the counters, histograms and frame number, and restart the decoder."""
        self.device.write("tagger.command", clear=1)
        self.decoder.reset()
        self._phase_counts[:] = 0
        self._pending = []

    def counters(self):
        """Return every counter: per-channel ones as lists, global ones as ints."""
        regs = self.device.burst_read(f"tagger.{next(iter(CHANNEL_COUNTERS))}[0]",
                                      f"tagger.{list(GLOBAL_COUNTERS)[-1]}")
        out = {name: [regs[f"tagger.{name}[{ch}]"] for ch in range(CHANNELS)]
               for name in CHANNEL_COUNTERS}
        out.update({name: regs[f"tagger.{name}"] for name in GLOBAL_COUNTERS})
        return out

    def histograms(self):
        """Return the phase histograms since the last ``clear()``: counts per (channel, bin),
        bin = phase >> ``tagger.hist_shift``, phases past the last bin not counted.

        With hardware histograms (``hist_bins`` > 0, ``hist_source`` "hardware"): the gateware's,
        shape (CHANNELS, hist_bins), counting every synchronised click after dead time, in the
        gate or not. Without (``hist_bins`` 0, e.g. the iCEBreaker): built here from the
        DETECTION records received since the clear (those not read yet are read now and kept
        for ``read_records``), shape (CHANNELS, HIST_BINS): one count per detection and
        channel in its mask, at the detection's phase (its earliest accepted click). That is
        the clicks' histogram when the gate is fully open and channels rarely click in one
        slot; out-of-gate clicks and dropped detections are not in it.
        """
        if self.hist_bins:
            count = CHANNELS * self.hist_bins
            regs = self.device.burst_read("tagger.hist[0]", count=count)
            return np.array(list(regs.values()), dtype=np.int64).reshape(CHANNELS,
                                                                         self.hist_bins)
        data = self.device.link.stream_read(StreamChannel.EVENTS)
        if data:
            self._pending.append(self._decoded(data))
        shift = int(self.device.read("tagger.hist_shift"))
        bins = np.arange(1 << PHASE_BITS) >> shift
        keep = bins < HIST_BINS
        out = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        for ch in range(CHANNELS):
            np.add.at(out[ch], bins[keep], self._phase_counts[ch, keep])
        return out

    def read_records(self, size=None, timeout=None):
        """Return the Records of the EVENTS bytes received so far (waiting up to ``timeout`` s for
        ``size`` bytes when given)."""
        data = self.device.link.stream_read(StreamChannel.EVENTS, size=size, timeout=timeout)
        records = self._decoded(data)
        if self._pending:
            records = Records.concat(self._pending + [records])
            self._pending = []
        return records

    def _decoded(self, data):
        """Decode ``data`` (EVENTS bytes); without hardware histograms, count its detections'
        phases per channel."""
        records = self.decoder.feed(data)
        if not self.hist_bins and len(records):
            for ch in range(CHANNELS):
                hit = (records.mask & (1 << ch)) != 0
                self._phase_counts[ch] += np.bincount(records.phase[hit],
                                                      minlength=1 << PHASE_BITS)
        return records
