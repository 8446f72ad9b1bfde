"""From classified events to 32-bit records: the item queue, the record writer, the serialiser.

An *item* is what the slot classifier produces: a detection event (frame, slot, mask, phase) or a
sync marker. Up to ``ITEMS`` items a clock enter ``ItemQueue``; it is the tagger's only drop point:
items that find it full are dropped and counted, and the next item it takes carries the counts
(``gap_events``, ``gap_markers``). ``RecordWriter`` turns each queued item into records: an
OVERFLOW record first if the item carries a gap, a FRAME record before a detection whose frame
differs from the last FRAME record sent (or after an overflow), then the item's own record. It
stalls while the event FIFO is full, so the queue fills and drops; nothing is lost silently.
"""

from amaranth import *
from amaranth.lib import wiring, data, enum, stream
from amaranth.lib.wiring import In, Out

from ..spec.tagger import (CHANNELS, PHASE_BITS, SLOT_BITS, FRAME_BITS, RecordKind, MarkerCode,
                           DetectionRecord, FrameRecord, OverflowRecord, MarkerRecord)

__all__ = ["ItemKind", "ItemLayout", "QueueEntry", "ITEMS", "ItemQueue", "RecordWriter",
           "RecordSerializer"]

#: Items the slot classifier can produce in one clock (see ``tagger_slots``).
ITEMS = 4


class ItemKind(enum.Enum, shape=2):
    """What a queued item is."""
    DETECTION = 0
    SYNC_LOST = 1
    SYNC_ACQUIRED = 2
    #: Only a gap: the queue had room again before any item came, so the OVERFLOW record is
    #: sent at once rather than with the next item.
    GAP = 3


ItemLayout = data.StructLayout({
    "kind": ItemKind,
    "frame": FRAME_BITS,
    "slot": SLOT_BITS,
    "mask": CHANNELS,
    "phase": PHASE_BITS,
})

_GAP_EVENTS = OverflowRecord["events"].shape
_GAP_MARKERS = OverflowRecord["markers"].shape

QueueEntry = data.StructLayout({
    "item": ItemLayout,
    #: Detections dropped just before this item (saturating at the OVERFLOW field's width).
    "gap_events": _GAP_EVENTS,
    #: Markers dropped just before this item.
    "gap_markers": _GAP_MARKERS,
})


def _sat_add(m, a, b, width):
    """Return ``a + b`` saturated at ``2**width - 1``."""
    total = Signal(width + 4)
    m.d.comb += total.eq(a + b)
    return Mux(total >> width != 0, (1 << width) - 1, total[:width])


class ItemQueue(wiring.Component):
    """A ``depth``-entry queue taking up to ``ITEMS`` items a clock, in order, one out a clock.

    Items take the free entries in index order; the rest are dropped and counted (``drop_events``
    and ``drop_markers`` say how many this clock). A pending gap rides on the next item taken, or
    on a GAP item of its own in the first clock with room and no item. ``hold`` drops every item
    as if the queue were full. ``clear`` forgets the gap.
    """

    def __init__(self, depth=4):
        self.depth = depth
        super().__init__({
            "i_valid": In(1).array(ITEMS),
            "i_item": In(ItemLayout).array(ITEMS),
            "o_stream": Out(stream.Signature(QueueEntry)),
            "drop_events": Out(range(ITEMS + 1)),
            "drop_markers": Out(range(ITEMS + 1)),
            "clear": In(1),
            "hold": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.depth
        entries = Array(Signal(QueueEntry, name=f"entry{i}") for i in range(d))
        count = Signal(range(d + 1))
        gap_events = Signal(_GAP_EVENTS)
        gap_markers = Signal(_GAP_MARKERS)

        pop = Signal()
        m.d.comb += [
            self.o_stream.valid.eq(count != 0),
            self.o_stream.payload.eq(entries[0]),
            pop.eq(self.o_stream.valid & self.o_stream.ready),
        ]
        base = Signal(range(d + 1))
        m.d.comb += base.eq(count - pop)

        # Position of each valid item among this clock's valid items, and whether it fits.
        pos = [Signal(range(ITEMS + 1), name=f"pos{k}") for k in range(ITEMS)]
        fits = [Signal(name=f"fits{k}") for k in range(ITEMS)]
        first = [Signal(name=f"first{k}") for k in range(ITEMS)]
        for k in range(ITEMS):
            m.d.comb += pos[k].eq(sum((self.i_valid[i] for i in range(k)), Const(0, range(ITEMS + 1))))
            m.d.comb += fits[k].eq(self.i_valid[k] & (base + pos[k] < d) & ~self.hold)
            m.d.comb += first[k].eq(fits[k] & (pos[k] == 0))
        taken = Signal(range(ITEMS + 1))
        m.d.comb += taken.eq(sum((fits[k] for k in range(ITEMS)), Const(0, range(ITEMS + 1))))
        dropped_det = [self.i_valid[k] & ~fits[k] & (self.i_item[k].kind == ItemKind.DETECTION)
                       for k in range(ITEMS)]
        dropped_mark = [self.i_valid[k] & ~fits[k] & (self.i_item[k].kind != ItemKind.DETECTION)
                        for k in range(ITEMS)]
        m.d.comb += [
            self.drop_events.eq(sum((Value.cast(x) for x in dropped_det), Const(0, range(ITEMS + 1)))),
            self.drop_markers.eq(sum((Value.cast(x) for x in dropped_mark), Const(0, range(ITEMS + 1)))),
        ]

        # Shift out on pop, then write the items that fit behind the remaining entries.
        for i in range(d):
            with m.If(pop):
                m.d.sync += entries[i].eq(entries[i + 1] if i + 1 < d else 0)
            for k in range(ITEMS):
                with m.If(fits[k] & (base + pos[k] == i)):
                    m.d.sync += [entries[i].item.eq(self.i_item[k]),
                                 entries[i].gap_events.eq(Mux(first[k], gap_events, 0)),
                                 entries[i].gap_markers.eq(Mux(first[k], gap_markers, 0))]
        # Room again and nothing arriving: send the gap on its own.
        gap_only = Signal()
        m.d.comb += gap_only.eq(~Cat(*self.i_valid).any() & (base < d) & ~self.hold &
                                ((gap_events != 0) | (gap_markers != 0)))
        with m.If(gap_only):
            m.d.sync += [entries[base].item.kind.eq(ItemKind.GAP),
                         entries[base].gap_events.eq(gap_events),
                         entries[base].gap_markers.eq(gap_markers)]
        m.d.sync += count.eq(base + taken + gap_only)

        # The gap: reset when an item carried it away, grown by this clock's drops (which come
        # after every item that fitted, so they belong to the next item taken).
        any_taken = (taken != 0) | gap_only
        kept_events = Mux(any_taken, 0, gap_events)
        kept_markers = Mux(any_taken, 0, gap_markers)
        with m.If(self.clear):
            m.d.sync += [gap_events.eq(0), gap_markers.eq(0)]
        with m.Else():
            m.d.sync += [gap_events.eq(_sat_add(m, kept_events, self.drop_events, len(gap_events))),
                         gap_markers.eq(_sat_add(m, kept_markers, self.drop_markers,
                                                 len(gap_markers)))]
        return m


class RecordWriter(wiring.Component):
    """Write each queued item as its records (OVERFLOW, FRAME, then its own) into ``o_stream``.

    ``clear`` forgets the last frame sent, so the next detection gets a FRAME record.
    """

    i_stream: In(stream.Signature(QueueEntry))
    o_stream: Out(stream.Signature(32))
    clear: In(1)

    def elaborate(self, platform):
        m = Module()
        entry = self.i_stream.payload
        item = entry.item
        last_frame = Signal(FRAME_BITS)
        last_valid = Signal()
        gap_done = Signal()

        has_gap = ((entry.gap_events != 0) | (entry.gap_markers != 0)) & ~gap_done
        is_det = item.kind == ItemKind.DETECTION
        need_frame = is_det & (~last_valid | (last_frame != item.frame))

        overflow = Signal(OverflowRecord)
        frame = Signal(FrameRecord)
        det = Signal(DetectionRecord)
        marker = Signal(MarkerRecord)
        m.d.comb += [
            overflow.kind.eq(RecordKind.OVERFLOW), overflow.events.eq(entry.gap_events),
            overflow.markers.eq(entry.gap_markers),
            frame.kind.eq(RecordKind.FRAME), frame.frame.eq(item.frame),
            det.kind.eq(RecordKind.DETECTION), det.mask.eq(item.mask), det.slot.eq(item.slot),
            det.phase.eq(item.phase),
            marker.kind.eq(RecordKind.MARKER), marker.frame.eq(item.frame),
            marker.code.eq(Mux(item.kind == ItemKind.SYNC_LOST, MarkerCode.SYNC_LOST,
                               MarkerCode.SYNC_ACQUIRED)),
        ]
        is_gap = item.kind == ItemKind.GAP
        m.d.comb += self.o_stream.valid.eq(self.i_stream.valid & (has_gap | ~is_gap))
        with m.If(self.i_stream.valid & ~has_gap & is_gap):
            m.d.comb += self.i_stream.ready.eq(1)
            m.d.sync += gap_done.eq(0)
        with m.If(has_gap):
            m.d.comb += self.o_stream.payload.eq(overflow.as_value())
        with m.Elif(need_frame):
            m.d.comb += self.o_stream.payload.eq(frame.as_value())
        with m.Elif(is_det):
            m.d.comb += self.o_stream.payload.eq(det.as_value())
        with m.Else():
            m.d.comb += self.o_stream.payload.eq(marker.as_value())

        with m.If(self.o_stream.valid & self.o_stream.ready):
            with m.If(has_gap):
                m.d.sync += [gap_done.eq(1), last_valid.eq(0)]
            with m.Elif(need_frame):
                m.d.sync += [last_valid.eq(1), last_frame.eq(item.frame)]
            with m.Else():
                m.d.comb += self.i_stream.ready.eq(1)
                m.d.sync += gap_done.eq(0)
        with m.If(self.clear):
            m.d.sync += last_valid.eq(0)
        return m


class RecordSerializer(wiring.Component):
    """Send 32-bit records as bytes, most significant first; ``o_level`` counts the bytes waiting
    here and, via ``i_words`` (words queued upstream), in the FIFO before it."""

    i_stream: In(stream.Signature(32))
    o_stream: Out(stream.Signature(8))
    i_words: In(16)
    o_level: Out(16)

    def elaborate(self, platform):
        m = Module()
        shreg = Signal(32)
        left = Signal(range(5))
        m.d.comb += [
            self.o_stream.valid.eq(left != 0),
            self.o_stream.payload.eq(shreg[24:]),
            self.i_stream.ready.eq((left == 0) | ((left == 1) & self.o_stream.ready)),
            self.o_level.eq((self.i_words << 2) + left),
        ]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += [shreg.eq(shreg << 8), left.eq(left - 1)]
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += [shreg.eq(self.i_stream.payload), left.eq(4)]
        return m
