"""Golden model of Bob's time tagger: click and sync times in bins in, record words out.

The same algorithm as the gateware (``gateware.cores.tagger_slots`` documents it; so does
``docs/tagger.md``), written over whole arrays with numpy, with the two inherently sequential
steps (the non-paralysable dead time and the one-pending-origin sync rule) as small numba loops.
The cocotb scoreboard compares the gateware's record stream with ``TaggerModel.run(...).words``
bit for bit; ``hil.model`` serves it as the behavioural board's Bob.

Times are integers in bins (one bin = clock period / ``samples``); bin ``c * samples + j`` is
sample ``j`` of clock ``c``. The model covers one run from a ``clear``: frame numbers start at 0.
"""

from dataclasses import dataclass, field

import numba
import numpy as np

from gateware.spec.tagger import (
    CHANNELS, FRAME_BITS, HIST_BINS, PHASE_BITS, SLOT_BITS, RecordKind, MarkerCode,
    DetectionRecord, FrameRecord, OverflowRecord, MarkerRecord, field_slice,
    CHANNEL_COUNTERS, GLOBAL_COUNTERS,
)

__all__ = ["TaggerConfig", "TaggerResult", "TaggerModel", "ITEM_DTYPE", "Item",
           "encode", "render_records"]


class Item:
    """Item kinds, in the order the gateware emits items that fall in the same bin."""
    DETECTION = 0
    SYNC_LOST = 1
    SYNC_ACQUIRED = 2
    GAP = 3


#: One classified item: when it is flushed (bin), its tie-break rank, kind and fields.
ITEM_DTYPE = np.dtype([("time", np.int64), ("rank", np.int8), ("kind", np.int8),
                       ("frame", np.int64), ("slot", np.int64), ("mask", np.int64),
                       ("phase", np.int64)])


@dataclass
class TaggerConfig:
    """The tagger's registers as the model needs them (all times in bins)."""
    samples: int = 1
    slot_period: int = 8
    frame_slots: int = 1024
    sync_delay: int = 0
    gate_start: int = 0
    gate_width: int = 1 << PHASE_BITS
    dead_time: tuple = (0,) * CHANNELS
    hist_shift: int = 0

    def __post_init__(self):
        if not self.samples <= self.slot_period < 1 << PHASE_BITS:
            raise ValueError(f"slot_period {self.slot_period} bins: must be from samples "
                             f"({self.samples}) to {(1 << PHASE_BITS) - 1}")
        if not 1 <= self.frame_slots < 1 << SLOT_BITS:
            raise ValueError(f"frame_slots {self.frame_slots}: must be 1 to {(1 << SLOT_BITS) - 1}")
        self.dead_time = tuple(int(d) for d in self.dead_time)

    @property
    def frame_bins(self):
        """Length of a frame, in bins."""
        return self.frame_slots * self.slot_period


@dataclass
class TaggerResult:
    """What a run produced: ``words`` (uint32 records), ``items`` (ITEM_DTYPE, in order), the
    counters by register name (per-channel ones as arrays) and ``hist`` (CHANNELS x HIST_BINS)."""
    words: np.ndarray
    items: np.ndarray
    counters: dict = field(default_factory=dict)
    hist: np.ndarray = None


# -- record encoding from the spec's layouts ------------------------------------------------------

def _put(layout, name, value):
    offset, width = field_slice(layout, name)
    return (np.asarray(value, dtype=np.uint64) & np.uint64((1 << width) - 1)) << np.uint64(offset)


def encode(kind, **fields):
    """Return record words (uint32 array) of ``kind`` (RecordKind) with the given field arrays."""
    layout = {RecordKind.DETECTION: DetectionRecord, RecordKind.FRAME: FrameRecord,
              RecordKind.OVERFLOW: OverflowRecord, RecordKind.MARKER: MarkerRecord}[kind]
    word = _put(layout, "kind", kind.value)
    for name, value in fields.items():
        word = word | _put(layout, name, value)
    return np.asarray(word, dtype=np.uint64).astype(np.uint32)


def _sat(value, layout, name):
    return min(int(value), (1 << field_slice(layout, name)[1]) - 1)


def render_records(items, gaps=None):
    """Return the record words the writer sends for ``items`` (ITEM_DTYPE, in order).

    ``gaps`` (optional, ``(events, markers)`` per item) are the drops the item carries: an OVERFLOW
    record goes before it and the next detection gets a FRAME record again. A GAP item sends its
    OVERFLOW record only. A FRAME record precedes each detection whose frame differs from the
    last FRAME record sent.
    """
    out = []
    last = None
    frame_mask = (1 << FRAME_BITS) - 1
    for i, it in enumerate(items):
        if gaps is not None and (gaps[i][0] or gaps[i][1]):
            out.append(int(encode(RecordKind.OVERFLOW,
                                  events=_sat(gaps[i][0], OverflowRecord, "events"),
                                  markers=_sat(gaps[i][1], OverflowRecord, "markers"))))
            last = None
        kind = int(it["kind"])
        frame = int(it["frame"]) & frame_mask
        if kind == Item.DETECTION:
            if frame != last:
                out.append(int(encode(RecordKind.FRAME, frame=frame)))
                last = frame
            out.append(int(encode(RecordKind.DETECTION, mask=int(it["mask"]), slot=int(it["slot"]),
                                  phase=int(it["phase"]))))
        elif kind in (Item.SYNC_LOST, Item.SYNC_ACQUIRED):
            code = MarkerCode.SYNC_LOST if kind == Item.SYNC_LOST else MarkerCode.SYNC_ACQUIRED
            out.append(int(encode(RecordKind.MARKER, code=code.value, frame=frame)))
    return np.array(out, dtype=np.uint32)


# -- the sequential steps -------------------------------------------------------------------------

@numba.njit(cache=True)
def _dead_time(times, dead):
    """Return a mask of the clicks outside the non-paralysable dead time (sorted ``times``)."""
    keep = np.zeros(times.size, dtype=np.bool_)
    until = np.iinfo(np.int64).min
    for i in range(times.size):
        if times[i] >= until:
            keep[i] = True
            until = times[i] + dead
    return keep


@numba.njit(cache=True)
def _origins(edges, delay, samples):
    """Return the frame origins of sync ``edges``: one pending origin; an edge is ignored while
    the last accepted origin's clock is at or after the edge's clock."""
    out = np.empty(edges.size, dtype=np.int64)
    n = 0
    for i in range(edges.size):
        if n == 0 or out[n - 1] // samples < edges[i] // samples:
            out[n] = edges[i] + delay
            n += 1
    return out[:n]


def _first_per_clock(times, samples):
    """Keep the first time in each clock (one rising edge per input per clock)."""
    times = np.unique(np.asarray(times, dtype=np.int64))
    if times.size == 0:
        return times
    clock = times // samples
    keep = np.ones(times.size, dtype=bool)
    keep[1:] = clock[1:] != clock[:-1]
    return times[keep]


class TaggerModel:
    """The tagger for one ``TaggerConfig``; ``run(clicks, syncs)`` classifies a whole run."""

    def __init__(self, config):
        self.config = config

    def run(self, clicks, syncs, first_frame=0):
        """Return a TaggerResult for ``clicks`` (CHANNELS sequences of click times, bins) and
        ``syncs`` (sync edge times, bins). Every frame closes (a run ends with sync lost); the
        first frame is numbered ``first_frame`` (0 after a clear)."""
        cfg = self.config
        n = cfg.samples
        period = cfg.slot_period
        origins = _origins(_first_per_clock(syncs, n), cfg.sync_delay, n)
        # Frame k runs from origins[k] to the next origin or its end, whichever comes first.
        ends = origins + cfg.frame_bins
        nxt = np.append(origins[1:], np.iinfo(np.int64).max)
        lost = ends < nxt
        acquired = np.ones(origins.size, dtype=bool)
        acquired[1:] = lost[:-1]

        counters = {name: np.zeros(CHANNELS, dtype=np.int64) for name in CHANNEL_COUNTERS}
        hist = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        no_sync = 0
        acc_t, acc_ch, acc_frame, acc_slot, acc_phase = [], [], [], [], []
        for ch in range(CHANNELS):
            t = _first_per_clock(clicks[ch], n)
            live_mask = _dead_time(t, cfg.dead_time[ch])
            counters["raw"][ch] = t.size
            counters["dead"][ch] = int((~live_mask).sum())
            t = t[live_mask]
            k = np.searchsorted(origins, t, side="right") - 1
            in_frame = k >= 0
            if origins.size:
                in_frame &= t < ends[np.maximum(k, 0)]
            no_sync += int((~in_frame).sum())
            t, k = t[in_frame], k[in_frame]
            d = t - origins[k] if t.size else t
            slot, phase = d // period, d % period
            hbin = phase >> cfg.hist_shift
            np.add.at(hist[ch], hbin[hbin < HIST_BINS], 1)
            gate = (phase >= cfg.gate_start) & (phase - cfg.gate_start < cfg.gate_width)
            counters["out_of_gate"][ch] = int((~gate).sum())
            counters["accepted"][ch] = int(gate.sum())
            acc_t.append(t[gate]); acc_ch.append(np.full(int(gate.sum()), ch))
            acc_frame.append(k[gate]); acc_slot.append(slot[gate]); acc_phase.append(phase[gate])

        events = self._merge(np.concatenate(acc_t), np.concatenate(acc_ch),
                             np.concatenate(acc_frame), np.concatenate(acc_slot),
                             np.concatenate(acc_phase), origins, nxt)
        markers = np.zeros(int(lost.sum() + acquired.sum()), dtype=ITEM_DTYPE)
        nl = int(lost.sum())
        markers["time"][:nl] = ends[lost]
        markers["rank"][:nl] = 1
        markers["kind"][:nl] = Item.SYNC_LOST
        markers["frame"][:nl] = np.flatnonzero(lost)
        markers["time"][nl:] = origins[acquired]
        markers["rank"][nl:] = 2
        markers["kind"][nl:] = Item.SYNC_ACQUIRED
        markers["frame"][nl:] = np.flatnonzero(acquired)
        items = np.concatenate([events, markers])
        items = items[np.lexsort((items["rank"], items["time"]))]
        items["frame"] += first_frame

        counters.update({
            "events": events.size, "dropped_events": 0, "dropped_markers": 0,
            "frames": origins.size, "sync_losses": nl, "sync_acquired": int(acquired.sum()),
            "no_sync": no_sync,
        })
        assert set(counters) == set(CHANNEL_COUNTERS) | set(GLOBAL_COUNTERS)
        return TaggerResult(render_records(items), items, counters, hist)

    def _merge(self, t, ch, frame, slot, phase, origins, nxt):
        """Merge accepted clicks of one (frame, slot) into one event; flushed at the slot's end."""
        cfg = self.config
        order = np.lexsort((ch, t))
        t, ch, frame, slot, phase = t[order], ch[order], frame[order], slot[order], phase[order]
        key = frame * (1 << SLOT_BITS) + slot
        start = np.ones(key.size, dtype=bool)
        start[1:] = key[1:] != key[:-1]
        first = np.flatnonzero(start)
        events = np.zeros(first.size, dtype=ITEM_DTYPE)
        if not first.size:
            return events
        events["mask"] = np.bitwise_or.reduceat(np.left_shift(1, ch), first)
        events["frame"] = frame[first]
        events["slot"] = slot[first]
        events["phase"] = phase[first]          # the earliest click (sorted by time)
        slot_end = origins[frame[first]] + (slot[first] + 1) * cfg.slot_period
        events["time"] = np.minimum(slot_end, nxt[frame[first]])
        events["kind"] = Item.DETECTION
        return events
