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

__all__ = ["TaggerConfig", "TaggerResult", "TaggerModel", "TaggerStream", "PacedQueue", "ITEM_DTYPE", "Item",
           "encode", "render_records", "join_results"]


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

_LAYOUTS = {RecordKind.DETECTION: DetectionRecord, RecordKind.FRAME: FrameRecord,
            RecordKind.OVERFLOW: OverflowRecord, RecordKind.MARKER: MarkerRecord}
_SLICES = {}


def _slice(layout, name):
    """Return ``field_slice(layout, name)``, cached (the layouts are constant)."""
    key = (id(layout), name)
    if key not in _SLICES:
        _SLICES[key] = field_slice(layout, name)
    return _SLICES[key]


def _put(layout, name, value):
    offset, width = _slice(layout, name)
    return (np.asarray(value, dtype=np.uint64) & np.uint64((1 << width) - 1)) << np.uint64(offset)


def encode(kind, **fields):
    """Return record words (uint32 array) of ``kind`` (RecordKind) with the given field arrays."""
    layout = _LAYOUTS[kind]
    word = _put(layout, "kind", kind.value)
    for name, value in fields.items():
        word = word | _put(layout, name, value)
    return np.asarray(word, dtype=np.uint64).astype(np.uint32)


def _sat(value, layout, name):
    """Return ``value`` (array) saturated to the width of field ``name``."""
    return np.minimum(np.asarray(value, dtype=np.int64), (1 << _slice(layout, name)[1]) - 1)


def render_records(items, gaps=None):
    """Return the record words the writer sends for ``items`` (ITEM_DTYPE, in order).

    ``gaps`` (optional, ``(events, markers)`` per item) are the drops the item carries: an OVERFLOW
    record goes before it and the next detection gets a FRAME record again. A GAP item sends its
    OVERFLOW record only. A FRAME record precedes each detection whose frame differs from the
    last FRAME record sent.
    """
    return _render(items, gaps, None)[0]


def _render(items, gaps, last):
    """``render_records`` continuing after a FRAME record of frame ``last`` (None: none or an
    overflow since); return the words and the new ``last``. Whole arrays, no loop per item."""
    n = len(items)
    if n == 0:
        return np.zeros(0, dtype=np.uint32), last
    kind = items["kind"].astype(np.int64)
    frame = items["frame"] & ((1 << FRAME_BITS) - 1)
    gaps = np.zeros((n, 2), dtype=np.int64) if gaps is None else \
        np.asarray(gaps, dtype=np.int64).reshape(n, 2)
    has_gap = (gaps[:, 0] != 0) | (gaps[:, 1] != 0)
    det = kind == Item.DETECTION
    marker = (kind == Item.SYNC_LOST) | (kind == Item.SYNC_ACQUIRED)
    # FRAME before a detection whose frame differs from the previous detection's, or with an
    # overflow at or after that detection (up to this one), or first with no FRAME sent before
    gap_count = np.cumsum(has_gap)
    di = np.flatnonzero(det)
    need_frame = np.zeros(n, dtype=bool)
    if di.size:
        prev_frame = np.empty(di.size, dtype=np.int64)
        prev_frame[1:] = frame[di[:-1]]
        reset = np.empty(di.size, dtype=bool)
        reset[1:] = gap_count[di[1:]] != gap_count[di[:-1]]
        reset[0] = last is None or gap_count[di[0]] > 0
        prev_frame[0] = -1 if last is None else last
        need_frame[di] = reset | (frame[di] != prev_frame)
    count = has_gap.astype(np.int64) + need_frame + (det | marker)
    end = np.cumsum(count)
    start = end - count
    out = np.zeros(int(end[-1]), dtype=np.uint32)
    g = np.flatnonzero(has_gap)
    out[start[g]] = encode(RecordKind.OVERFLOW,
                           events=_sat(gaps[g, 0], OverflowRecord, "events"),
                           markers=_sat(gaps[g, 1], OverflowRecord, "markers"))
    f = np.flatnonzero(need_frame)
    out[start[f] + has_gap[f]] = encode(RecordKind.FRAME, frame=frame[f])
    own = start + has_gap + need_frame
    out[own[det]] = encode(RecordKind.DETECTION, mask=items["mask"][det], slot=items["slot"][det],
                           phase=items["phase"][det])
    code = np.where(kind == Item.SYNC_LOST, MarkerCode.SYNC_LOST.value,
                    MarkerCode.SYNC_ACQUIRED.value)
    out[own[marker]] = encode(RecordKind.MARKER, code=code[marker], frame=frame[marker])
    # the FRAME record last sent, for the next call
    if has_gap[-1] or (g.size and (not di.size or g[-1] > di[-1])):
        last = None
    if di.size and (not g.size or di[-1] >= g[-1]):
        last = int(frame[di[-1]])
    return out, last


# -- the sequential steps -------------------------------------------------------------------------

@numba.njit(cache=True)
def _dead_time(times, dead, until):
    """Return a mask of the clicks outside the non-paralysable dead time (sorted ``times``; the
    dead time of an earlier click lasts until ``until``) and the ``until`` after them."""
    keep = np.zeros(times.size, dtype=np.bool_)
    for i in range(times.size):
        if times[i] >= until:
            keep[i] = True
            until = times[i] + dead
    return keep, until


@numba.njit(cache=True)
def _origins(edges, delay, samples, last_clock):
    """Return the frame origins of sync ``edges``: one pending origin; an edge is ignored while
    the last accepted origin's clock (``last_clock`` before the first edge) is at or after the
    edge's clock."""
    out = np.empty(edges.size, dtype=np.int64)
    n = 0
    for i in range(edges.size):
        if edges[i] // samples > last_clock:
            out[n] = edges[i] + delay
            last_clock = out[n] // samples
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


_NEVER = np.iinfo(np.int64).min // 4      # "no such time yet" (clocks and dead-time ends)
_ENDLESS = np.iinfo(np.int64).max           # "not before the end of time" (an unknown next origin)


class TaggerModel:
    """The tagger for one ``TaggerConfig``; ``run(clicks, syncs)`` classifies a whole run,
    ``stream()`` returns a ``TaggerStream`` that takes the same light in stretches."""

    def __init__(self, config):
        self.config = config

    def stream(self, first_frame=0):
        """Return a TaggerStream of this configuration whose first frame is ``first_frame``."""
        return TaggerStream(self.config, first_frame)

    def run(self, clicks, syncs, first_frame=0):
        """Return a TaggerResult for ``clicks`` (CHANNELS sequences of click times, bins) and
        ``syncs`` (sync edge times, bins). Every frame closes (a run ends with sync lost); the
        first frame is numbered ``first_frame`` (0 after a clear)."""
        return self.stream(first_frame).feed(clicks, syncs, final=True)


class TaggerStream:
    """One tagger run fed in stretches: ``feed(clicks, syncs, until)`` takes the light of bins
    ``[previous until, until)`` and returns a TaggerResult of the items that are final by then.

    The tagger's state carries from one stretch to the next as in the gateware, whose sync is
    continuous: the last accepted frame origin (the pending-origin rule, frame membership,
    the frame counter), whether that frame was lost, each channel's dead time and last click
    clock, the sync input's last edge clock, the accepted clicks of slots still open (they merge
    with later clicks of the same slot) and the FRAME record last sent. An item is final once
    its flush time is before ``until``: no later light can change it. So splitting one click
    train into stretches at any points gives exactly the records, counters and histograms of
    ``TaggerModel.run`` over the whole train (the items of each stretch's result are the
    run's items whose time falls in the stretch; ``final=True`` closes the run: every open
    frame ends with sync lost, as ``run`` does). Light before the previous ``until`` is
    refused (ValueError): it would change items already sent.

    ``disable(at)`` and ``enable(at)`` are ``tagger.control.enable`` going to 0 and back to 1
    as the gateware has it: a disable flushes the open event and drops sync (no SYNC_LOST; a
    pending origin is forgotten, so is the dead time); while disabled, ``feed`` ignores the
    light and only moves the time on; after an enable, clicks are no-sync until the next
    origin, whose frame gets a SYNC_ACQUIRED marker.
    """

    def __init__(self, config, first_frame=0):
        self.config = config
        self.until = _NEVER                          # light before this was fed
        self.closed = False
        self.next_frame = int(first_frame)           # number of the next accepted origin
        self.origins = np.empty(0, np.int64)         # origins still referenced, oldest first
        self.origin_frames = np.empty(0, np.int64)   # their frame numbers
        self.last_open = False                       # last origin's frame not yet known lost
        self.ever_synced = False
        self.edge_clock = _NEVER                     # clock of the sync input's last edge
        self.click_clock = np.full(CHANNELS, _NEVER, np.int64)
        self.dead_until = np.full(CHANNELS, _NEVER, np.int64)
        self.pending = _empty_clicks()              # accepted clicks of events not yet final
        self.markers = np.zeros(0, ITEM_DTYPE)       # markers known, not yet final
        self.uncounted_frame = int(first_frame)      # first frame not yet counted in ``frames``
        self.last_frame_record = None                # frame of the last FRAME record rendered
        self.enabled = True                          # tagger.control.enable

    def disable(self, at=None):
        """Stop taking light at bin ``at`` (rounded up to a clock; default: the time reached),
        as ``tagger.control.enable`` 0 does; return the TaggerResult of the items final by
        then and, last, the open event, flushed at ``at`` (the gateware flushes it in the
        first clock whose clicks it ignores).

        Sync is dropped without a SYNC_LOST marker (that frame and any later one are not
        lost, the tagger stopped): markers and origins from ``at`` on are forgotten (a
        pending origin never starts its frame, nor counts), and so is each channel's dead
        time. A second call only moves the time on."""
        n = self.config.samples
        at = max(self.until, 0) if at is None else int(at)
        at = -(-at // n) * n
        if at < self.until:
            raise ValueError(f"disable at bin {at}: the tagger has passed bin {self.until}")
        if not self.enabled:
            self.until = at
            return _empty_result()
        head = self.feed([()] * CHANNELS, (), at)
        nxt = np.append(self.origins[1:], _ENDLESS)
        events, _ = self._merge(self.pending, self.origins, self.origin_frames, nxt)
        events["time"] = at
        later = self.origin_frames[self.origins >= at]
        if later.size:
            self.next_frame = int(later[0])
        self.origins, self.origin_frames = np.empty(0, np.int64), np.empty(0, np.int64)
        self.pending, self.markers = _empty_clicks(), np.zeros(0, ITEM_DTYPE)
        self.last_open = self.ever_synced = False
        self.dead_until[:] = _NEVER
        self.enabled = False
        words, self.last_frame_record = _render(events, None, self.last_frame_record)
        tail = _empty_result()
        tail.counters["events"] = int(events.size)
        return join_results(head, TaggerResult(words, events, tail.counters, tail.hist))

    def enable(self, at=None):
        """Take light again from bin ``at`` (rounded up to a clock; default: the time
        reached), as ``tagger.control.enable`` 1 does: clicks from that clock on, sync edges
        from the clock after it (the gateware's sync leads its clicks by one clock, so the
        edges of that clock meet the tagger still disabled)."""
        n = self.config.samples
        at = max(self.until, 0) if at is None else int(at)
        at = -(-at // n) * n
        if at < self.until:
            raise ValueError(f"enable at bin {at}: the tagger has passed bin {self.until}")
        self.until = at
        if not self.enabled:
            self.edge_clock = max(self.edge_clock, at // n)
            self.enabled = True

    def feed(self, clicks, syncs, until=None, *, final=False):
        """Take ``clicks`` (CHANNELS sequences, bins) and ``syncs`` (bins) of the bins before
        ``until`` (default: just after the latest time given); return the TaggerResult of the
        items now final (all of them with ``final``, which ends the run)."""
        if self.closed:
            raise ValueError("this tagger run was closed (final=True): start a new stream")
        cfg = self.config
        n = cfg.samples
        if len(clicks) != CHANNELS:
            raise ValueError(f"clicks: {len(clicks)} channels given, the tagger has {CHANNELS}")
        clicks = [np.unique(np.asarray(c, dtype=np.int64)) for c in clicks]
        syncs = np.unique(np.asarray(syncs, dtype=np.int64))
        latest = max([int(c[-1]) for c in clicks if c.size] + ([int(syncs[-1])] if syncs.size else [])
                     + [self.until - 1])
        earliest = min([int(c[0]) for c in clicks if c.size] + ([int(syncs[0])] if syncs.size else [])
                       + [_ENDLESS])
        if earliest < self.until:
            raise ValueError(f"light at bin {earliest} comes after the tagger has passed bin "
                             f"{self.until}: feed stretches in time order")
        until = latest + 1 if until is None else int(until)
        if latest >= until:
            raise ValueError(f"light at bin {latest} is not before until={until}")
        if not self.enabled:                 # the light is ignored, the time moves on
            self.until = until
            return _empty_result()
        horizon = _ENDLESS if final else until

        # -- sync: new origins after the last accepted one ----------------------------------
        edges = _first_per_clock(syncs, n)
        edges = edges[edges // n > self.edge_clock]
        if edges.size:
            self.edge_clock = int(edges[-1] // n)
        last_clock = int(self.origins[-1] // n) if self.origins.size else _NEVER
        new = _origins(edges, cfg.sync_delay, n, last_clock)
        old = self.origins.size
        origins = np.concatenate([self.origins, new])
        frames = np.concatenate([self.origin_frames,
                                 self.next_frame + np.arange(new.size, dtype=np.int64)])
        self.next_frame += int(new.size)
        ends = origins + cfg.frame_bins
        nxt = np.append(origins[1:], _ENDLESS)
        markers = [self.markers]
        # lost: frames whose end comes before the next origin (or before the horizon, where
        # no later origin can come); acquired: origins after a lost frame, or the first ever
        first_open = old - 1 if self.last_open else old
        idx = np.arange(max(first_open, 0), origins.size)
        bound = nxt.copy()
        if bound.size:
            bound[-1] = horizon
        lost = ends[idx] < bound[idx]
        lost_now = idx[lost]
        if idx.size:
            self.last_open = not bool(lost[-1])
        markers.append(_markers(ends[lost_now], 1, Item.SYNC_LOST, frames[lost_now]))
        if new.size:
            prev_lost = np.empty(new.size, dtype=bool)
            prev_lost[1:] = ends[old:-1] < origins[old + 1:]
            prev_lost[0] = (ends[old - 1] < origins[old]) if old else not self.ever_synced
            acq = np.arange(old, origins.size)[prev_lost]
            markers.append(_markers(origins[acq], 2, Item.SYNC_ACQUIRED, frames[acq]))
            self.ever_synced = True
        markers = np.concatenate(markers)

        # -- clicks: per channel, dead time, frame, slot, gate ---------------------------------
        counters = {name: np.zeros(CHANNELS, dtype=np.int64) for name in CHANNEL_COUNTERS}
        hist = np.zeros((CHANNELS, HIST_BINS), dtype=np.int64)
        no_sync = 0
        acc = [self.pending]
        for ch in range(CHANNELS):
            t = _first_per_clock(clicks[ch], n)
            t = t[t // n > self.click_clock[ch]]
            if t.size:
                self.click_clock[ch] = int(t[-1] // n)
            live_mask, until_ch = _dead_time(t, cfg.dead_time[ch], int(self.dead_until[ch]))
            self.dead_until[ch] = until_ch
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
            slot, phase = d // cfg.slot_period, d % cfg.slot_period
            hbin = phase >> cfg.hist_shift
            np.add.at(hist[ch], hbin[hbin < HIST_BINS], 1)
            gate = (phase >= cfg.gate_start) & (phase - cfg.gate_start < cfg.gate_width)
            counters["out_of_gate"][ch] = int((~gate).sum())
            counters["accepted"][ch] = int(gate.sum())
            got = np.zeros(int(gate.sum()), _CLICK_DTYPE)
            got["time"], got["ch"], got["frame"] = t[gate], ch, frames[k[gate]]
            got["slot"], got["phase"] = slot[gate], phase[gate]
            acc.append(got)
        acc = np.concatenate(acc)
        events, event_of = self._merge(acc, origins, frames, nxt)

        # -- what is final: items before the horizon ----------------------------------------
        done_events = events["time"] < horizon
        self.pending = acc[~done_events[event_of]] if acc.size else acc
        done_markers = markers["time"] < horizon
        self.markers = markers[~done_markers]
        items = np.concatenate([events[done_events], markers[done_markers]])
        items = items[np.lexsort((items["rank"], items["time"]))]
        # ``frames`` counts an origin when its time comes (as ``sync_acquired`` does)
        counted = frames[(origins < horizon) & (frames >= self.uncounted_frame)]
        if counted.size:
            self.uncounted_frame = int(counted[-1]) + 1
        counters.update({
            "events": int(done_events.sum()), "dropped_events": 0, "dropped_markers": 0,
            "frames": int(counted.size),
            "sync_losses": int((items["kind"] == Item.SYNC_LOST).sum()),
            "sync_acquired": int((items["kind"] == Item.SYNC_ACQUIRED).sum()),
            "no_sync": no_sync,
        })
        assert set(counters) == set(CHANNEL_COUNTERS) | set(GLOBAL_COUNTERS)

        # -- keep the origins later light or pending items still refer to ---------------------
        # later light falls in the frame of the last origin before ``until`` or in a later one
        keep_from = min(max(int(np.searchsorted(origins, until, side="right")) - 1, 0),
                        int(np.searchsorted(frames, self.uncounted_frame)))
        for refs in (self.pending["frame"], self.markers["frame"]):
            if refs.size:
                keep_from = min(keep_from, int(np.searchsorted(frames, refs.min())))
        self.origins, self.origin_frames = origins[keep_from:], frames[keep_from:]
        self.until = until
        if final:
            self.closed = True
        words, self.last_frame_record = _render(items, None, self.last_frame_record)
        return TaggerResult(words, items, counters, hist)

    def _merge(self, acc, origins, frames, nxt):
        """Merge accepted clicks of one (frame, slot) into one event, flushed at the slot's end
        (or the next origin's, if sooner); return the events and each click's event index."""
        cfg = self.config
        order = np.lexsort((acc["ch"], acc["time"]))
        acc[:] = acc[order]
        key = acc["frame"] * (1 << SLOT_BITS) + acc["slot"]
        start = np.ones(key.size, dtype=bool)
        start[1:] = key[1:] != key[:-1]
        first = np.flatnonzero(start)
        event_of = np.cumsum(start) - 1
        events = np.zeros(first.size, dtype=ITEM_DTYPE)
        if not first.size:
            return events, event_of
        events["mask"] = np.bitwise_or.reduceat(np.left_shift(1, acc["ch"].astype(np.int64)), first)
        events["frame"] = acc["frame"][first]
        events["slot"] = acc["slot"][first]
        events["phase"] = acc["phase"][first]          # the earliest click (sorted by time)
        k = np.searchsorted(frames, events["frame"])
        slot_end = origins[k] + (events["slot"] + 1) * cfg.slot_period
        events["time"] = np.minimum(slot_end, nxt[k])
        events["kind"] = Item.DETECTION
        return events, event_of


def _empty_result():
    """Return a TaggerResult with no items and zero counters."""
    counters = {name: np.zeros(CHANNELS, dtype=np.int64) for name in CHANNEL_COUNTERS}
    counters.update(dict.fromkeys(GLOBAL_COUNTERS, 0))
    return TaggerResult(np.zeros(0, np.uint32), np.zeros(0, ITEM_DTYPE), counters,
                        np.zeros((CHANNELS, HIST_BINS), dtype=np.int64))


def join_results(a, b):
    """Return one TaggerResult of two consecutive ones."""
    return TaggerResult(np.concatenate([a.words, b.words]), np.concatenate([a.items, b.items]),
                        {k: a.counters[k] + b.counters[k] for k in a.counters}, a.hist + b.hist)


_CLICK_DTYPE = np.dtype([("time", np.int64), ("ch", np.int64), ("frame", np.int64),
                         ("slot", np.int64), ("phase", np.int64)])


def _empty_clicks():
    return np.zeros(0, _CLICK_DTYPE)


def _markers(times, rank, kind, frames):
    out = np.zeros(len(times), dtype=ITEM_DTYPE)
    out["time"], out["rank"], out["kind"], out["frame"] = times, rank, kind, frames
    return out


class PacedQueue:
    """The event FIFO before the link: ``capacity`` record words, sent at one word per
    ``word_bins`` bins of the tagger's time (the link's record rate; 0: the link takes every
    word at once, nothing ever drops), items in, words out.

    ``push(items, until)`` takes items (ITEM_DTYPE, in time order) at their flush times; an
    item whose records (its own, a FRAME record when its frame differs from the last one sent,
    an OVERFLOW record when drops came before it) do not fit in the words still queued at its
    time is dropped and counted. As in the gateware (``gateware.cores.tagger``), a drop starts
    a hold: every item is dropped until the FIFO is half empty, so sustained overload gives a
    few long gaps rather than many short ones. The drops go, as an OVERFLOW record, before the
    next item kept, or alone as soon as the hold is over and one word fits again (a GAP item),
    as the gateware's record writer does. Returns ``(words, kept items, dropped events,
    dropped markers)``.

    This is the model's own accounting of the gateware's FIFO, not a cycle-exact copy: the
    gateware drops whole clock groups at its four-group item queue in front of the record
    writer (one record per clock), and its UART framing and flush timing move the exact drop
    points by a few items. Below the link's limit neither drops, and the records are the
    gateware's bit for bit; above it, they agree by accounting (counters, OVERFLOW records and
    detections reconcile; the share dropped is the link's deficit), as the cocotb scoreboard
    compares overflow runs (``match_with_drops``).
    """

    def __init__(self, capacity, word_bins):
        if capacity < 3:
            raise ValueError(f"capacity {capacity} words: an item needs up to 3")
        if not word_bins >= 0:
            raise ValueError(f"word_bins {word_bins}: must be 0 (no pacing) or positive")
        self.capacity = int(capacity)
        self.word_bins = float(word_bins)
        self.busy = float(_NEVER)        # when the link has sent every word queued so far
        self.last = None                 # frame of the last FRAME record queued
        self.gap = [0, 0]                # drops not yet reported (events, markers)
        self.gap_time = None             # time of the last drop
        self.hold = False                # dropping everything until the FIFO is half empty
        self.half = self.capacity // 2

    def level(self, t):
        """Return the words still queued at time ``t`` (bins)."""
        if self.busy <= t or self.word_bins == 0:
            return 0
        return max(0, int(np.ceil((self.busy - t) / self.word_bins)))

    def _room_time(self):
        """Return the first time after the last drop when the hold is over (half the words
        sent) and one word fits again."""
        words = self.half if self.hold else self.capacity - 1
        return max(self.gap_time + 1, int(np.ceil(self.busy - words * self.word_bins)))

    def push(self, items, until):
        """Queue ``items`` (see the class); ``until``: the time the light has reached (a
        pending gap is reported alone if the queue had room again before it)."""
        last0 = self.last
        if self.word_bins == 0 and not (self.gap[0] or self.gap[1]):
            words, self.last = _render(items, None, last0)       # nothing can drop
            return words, items, 0, 0
        frames = items["frame"] & ((1 << FRAME_BITS) - 1)
        (src, gap_time, gap_e, gap_m, dropped_e, dropped_m, state) = _pace(
            items["time"].astype(np.int64), items["kind"] == Item.DETECTION, frames,
            self.capacity, self.half, self.word_bins, int(until), self.busy,
            -1 if self.last is None else int(self.last), self.gap[0], self.gap[1],
            _NEVER if self.gap_time is None else int(self.gap_time), self.hold)
        self.busy, last, self.gap[0], self.gap[1], gap_time_now, self.hold = state
        self.busy = float(self.busy)
        self.last = None if last < 0 else int(last)
        self.gap_time = None if gap_time_now == _NEVER else int(gap_time_now)
        kept = np.zeros(src.size, ITEM_DTYPE)
        mine = src >= 0
        kept[mine] = items[src[mine]]
        kept["time"][~mine], kept["rank"][~mine], kept["kind"][~mine] = gap_time[~mine], 3, Item.GAP
        words, last = _render(kept, np.stack([gap_e, gap_m], axis=1), last0)
        assert last == self.last
        return words, kept, int(dropped_e), int(dropped_m)


@numba.njit(cache=True)
def _pace(times, det, frames, capacity, half, word_bins, until, busy, last, gap_e, gap_m,
          gap_time, hold):
    """``PacedQueue.push`` over arrays: return, per record group kept, the item index (-1: a
    GAP item) with its time (GAP items) and the gap it carries, the drops, and the new state
    ``(busy, last, gap_e, gap_m, gap_time, hold)`` (``last`` -1: no FRAME record to follow)."""
    n = times.size
    src = np.empty(2 * n + 1, np.int64)
    out_time = np.zeros(2 * n + 1, np.int64)
    out_e = np.zeros(2 * n + 1, np.int64)
    out_m = np.zeros(2 * n + 1, np.int64)
    k = 0
    dropped_e = 0
    dropped_m = 0
    for i in range(n + 1):
        t = times[i] if i < n else until
        if gap_e != 0 or gap_m != 0:          # the pending gap alone, if there was room before t
            words = half if hold else capacity - 1
            room = max(gap_time + 1, int(np.ceil(busy - words * word_bins)))
            if room < t:
                src[k] = -1
                out_time[k] = room
                out_e[k] = gap_e
                out_m[k] = gap_m
                k += 1
                gap_e = 0
                gap_m = 0
                last = -1
                hold = False
                busy = max(busy, float(room)) + word_bins
        if i == n:
            break
        level = 0
        if busy > t and word_bins > 0:
            level = max(0, int(np.ceil((busy - t) / word_bins)))
        if hold and level <= half:
            hold = False
        gap = gap_e != 0 or gap_m != 0
        need = 1 + (1 if gap else 0) + (1 if det[i] and (gap or frames[i] != last) else 0)
        if hold or level + need > capacity:
            if det[i]:
                gap_e += 1
                dropped_e += 1
            else:
                gap_m += 1
                dropped_m += 1
            gap_time = t
            hold = True
            continue
        src[k] = i
        out_e[k] = gap_e
        out_m[k] = gap_m
        k += 1
        gap_e = 0
        gap_m = 0
        if gap:
            last = -1
        if det[i]:
            last = frames[i]
        busy = max(busy, float(t)) + need * word_bins
    return (src[:k], out_time[:k], out_e[:k], out_m[:k], dropped_e, dropped_m,
            (busy, last, gap_e, gap_m, gap_time, hold))
