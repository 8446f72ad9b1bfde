"""From classified events to 32-bit records: the item queue, the record writer, the serialiser.

An *item* is what the slot classifier produces: a detection event (frame, slot, mask, phase) or a
sync marker. Up to ``ITEMS`` items a clock enter ``ItemQueue`` as one group; it is the tagger's
only drop point: a clock's items that find it full are dropped and counted, and the next group it
takes carries the counts (``gap_events``, ``gap_markers``). ``RecordWriter`` turns each queued item into records: an
OVERFLOW record first if the item carries a gap, a FRAME record before a detection whose frame
differs from the last FRAME record sent (or after an overflow), then the item's own record. It
stalls while the event FIFO is full, so the queue fills and drops; nothing is lost silently.
"""

from amaranth import *
from amaranth.lib import wiring, data, enum, fifo, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .sampler import _family

from ..spec.tagger import (CHANNELS, PHASE_BITS, SLOT_BITS, FRAME_BITS, RecordKind, MarkerCode,
                           DetectionRecord, FrameRecord, OverflowRecord, MarkerRecord)

__all__ = ["ItemKind", "ItemLayout", "QueueEntry", "GroupLayout", "ITEMS", "ITEM_ROLES",
           "ItemQueue", "BlockFIFO", "RecordWriter", "RecordSerializer"]

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


#: The classifier's item slots, in time order within a clock: (kind, frame + ?, slot + ?, which
#: event). Slot 0 is segment A's event, 1 sync lost, 2 segment B's event, 3 sync acquired.
ITEM_ROLES = (
    (ItemKind.DETECTION, 0, 0, "a"),
    (ItemKind.SYNC_LOST, 0, 0, None),
    (ItemKind.DETECTION, 0, 1, "b"),
    (ItemKind.SYNC_ACQUIRED, 1, 0, None),
)

#: One clock's items, stored once: the shared frame and slot, the two events, the gap before.
GroupLayout = data.StructLayout({
    "valid": ITEMS,
    "frame": FRAME_BITS,
    "slot": SLOT_BITS,
    "mask_a": CHANNELS,
    "phase_a": PHASE_BITS,
    "mask_b": CHANNELS,
    "phase_b": PHASE_BITS,
    "gap_events": _GAP_EVENTS,
    "gap_markers": _GAP_MARKERS,
})


class ItemQueue(wiring.Component):
    """Queue the classifier's items (up to ``ITEMS`` a clock, in the roles of ``ITEM_ROLES``)
    and hand them out one a clock as ``QueueEntry`` beats.

    A clock's items are stored as one group (``GroupLayout``) in a ``depth``-group FIFO, so
    taking four items costs no more than taking one. A clock whose group finds the FIFO full
    (or ``hold`` set) is dropped whole and counted (``drop_events``, ``drop_markers``: how many
    this clock); the counts ride on the next group taken, or on a group of their own (a GAP item)
    in the first clock with room and no items. ``clear`` forgets the gap.

    ``memory``: the groups live in block RAM (``BlockFIFO``: a group reaches the output one
    clock later) instead of ``depth`` x ``GroupLayout.size`` flip-flops.
    """

    def __init__(self, depth=2, *, memory=False):
        self.depth = depth
        self.memory = memory
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
        if self.memory:
            groups = BlockFIFO(width=GroupLayout.size, depth=self.depth)
        else:
            groups = fifo.SyncFIFO(width=GroupLayout.size, depth=self.depth)
        m.submodules.groups = groups
        gap_events = Signal(_GAP_EVENTS)
        gap_markers = Signal(_GAP_MARKERS)
        valid = Cat(*self.i_valid)
        any_item = valid.any()
        has_gap = (gap_events != 0) | (gap_markers != 0)

        incoming = Signal(GroupLayout)
        m.d.comb += [
            incoming.valid.eq(valid), incoming.frame.eq(self.i_item[0].frame),
            incoming.slot.eq(self.i_item[0].slot),
            incoming.mask_a.eq(self.i_item[0].mask), incoming.phase_a.eq(self.i_item[0].phase),
            incoming.mask_b.eq(self.i_item[2].mask), incoming.phase_b.eq(self.i_item[2].phase),
            incoming.gap_events.eq(gap_events), incoming.gap_markers.eq(gap_markers),
            groups.w_data.eq(incoming.as_value()),
        ]
        room = groups.w_rdy & ~self.hold
        take = Signal()
        m.d.comb += [take.eq(room & (any_item | has_gap)), groups.w_en.eq(take)]
        dets = [k for k, role in enumerate(ITEM_ROLES) if role[0] == ItemKind.DETECTION]
        marks = [k for k in range(ITEMS) if k not in dets]
        dropping = any_item & ~room
        m.d.comb += [
            self.drop_events.eq(Mux(dropping, sum(self.i_valid[k] for k in dets), 0)),
            self.drop_markers.eq(Mux(dropping, sum(self.i_valid[k] for k in marks), 0)),
        ]
        with m.If(self.clear):
            m.d.sync += [gap_events.eq(0), gap_markers.eq(0)]
        with m.Elif(take):
            m.d.sync += [gap_events.eq(0), gap_markers.eq(0)]
        with m.Else():
            m.d.sync += [gap_events.eq(_sat_add(m, gap_events, self.drop_events, len(gap_events))),
                         gap_markers.eq(_sat_add(m, gap_markers, self.drop_markers,
                                                 len(gap_markers)))]

        # Unpack the head group: its items in order, the gap on the first beat.
        head = Signal(GroupLayout)
        m.d.comb += head.eq(groups.r_data)
        done = Signal(ITEMS)
        first = Signal()          # no beat of this group sent yet
        left = Signal(ITEMS)
        m.d.comb += left.eq(head.valid & ~done)
        index = Signal(range(ITEMS))
        for k in reversed(range(ITEMS)):
            with m.If(left[k]):
                m.d.comb += index.eq(k)
        out = self.o_stream.payload
        with m.Switch(index):
            for k, (kind, frame_add, slot_add, event) in enumerate(ITEM_ROLES):
                with m.Case(k):
                    m.d.comb += [out.item.kind.eq(kind), out.item.frame.eq(head.frame + frame_add),
                                 out.item.slot.eq(head.slot + slot_add)]
                    if event is not None:
                        m.d.comb += [out.item.mask.eq(head[f"mask_{event}"]),
                                     out.item.phase.eq(head[f"phase_{event}"])]
        with m.If(left == 0):     # a gap-only group
            m.d.comb += out.item.kind.eq(ItemKind.GAP)
        m.d.comb += [
            out.gap_events.eq(Mux(first, head.gap_events, 0)),
            out.gap_markers.eq(Mux(first, head.gap_markers, 0)),
            self.o_stream.valid.eq(groups.r_rdy),
        ]
        last = Signal()
        m.d.comb += last.eq((left & ~(1 << index)) == 0)
        with m.If(self.o_stream.valid & self.o_stream.ready):
            with m.If(last | (left == 0)):
                m.d.comb += groups.r_en.eq(1)
                m.d.sync += [done.eq(0)]
            with m.Else():
                m.d.sync += done.eq(done | (1 << index))
        m.d.comb += first.eq(done == 0)
        return m


#: SB_RAM40_4K read/write modes: (words, data pins used), one mode per depth range.
_ICE40_RAM_MODES = ((256, tuple(range(16))), (512, tuple(range(0, 16, 2))), (1024, (1, 5, 9, 13)),
                    (2048, (3, 11)))


class BlockFIFO(Elaboratable):
    """``fifo.SyncFIFOBuffered`` (same ports, same ``depth`` words counting the one on the read
    port, a word written to an empty FIFO readable one clock later), but on the iCE40 its
    memory is ``SB_RAM40_4K`` blocks instantiated directly.

    Through a ``Memory``, yosys puts a few-word memory into flip-flops, and for a block RAM it
    adds a flip-flop and a multiplexer per data bit for the read-during-write rule; on the
    iCE40, where a flip-flop without its own LUT takes a logic cell, that costs a cell per bit.
    Here the rule is free: the read and write addresses never meet in a clock that writes (equal
    pointers with words inside mean full).
    """

    def __init__(self, *, width, depth):
        if depth < 2 or depth - 1 > _ICE40_RAM_MODES[-1][0]:
            raise ValueError(f"BlockFIFO: depth={depth}; use 2 to {_ICE40_RAM_MODES[-1][0] + 1}")
        self.width = width
        self.depth = depth
        self.w_data = Signal(width)
        self.w_en = Signal()
        self.w_rdy = Signal()
        self.r_data = Signal(width)
        self.r_en = Signal()
        self.r_rdy = Signal()
        self.level = Signal(range(depth + 1))

    def elaborate(self, platform):
        m = Module()
        inner_depth = self.depth - 1
        wr_addr, wr_data, wr_en = (Signal(range(inner_depth)), Signal(self.width), Signal())
        rd_addr, rd_en, rd_data = Signal(range(inner_depth)), Signal(), Signal(self.width)
        if _family(platform) == "ice40":
            words, pins = next(mode for mode in _ICE40_RAM_MODES if inner_depth <= mode[0])
            mode = [mode[0] for mode in _ICE40_RAM_MODES].index(words)
            per = len(pins)
            for k in range(0, self.width, per):
                part = min(per, self.width - k)
                rdata = Signal(16, name=f"rdata{k // per}")
                wdata = Signal(16, name=f"wdata{k // per}")
                m.d.comb += [wdata[pins[i]].eq(wr_data[k + i]) for i in range(part)]
                m.d.comb += [rd_data[k + i].eq(rdata[pins[i]]) for i in range(part)]
                m.submodules[f"ram{k // per}"] = Instance(
                    "SB_RAM40_4K", p_READ_MODE=mode, p_WRITE_MODE=mode,
                    i_WCLK=ClockSignal("sync"), i_WCLKE=wr_en, i_WE=1,
                    i_WADDR=Cat(wr_addr, C(0, 11 - len(wr_addr))), i_WDATA=wdata, i_MASK=C(0, 16),
                    i_RCLK=ClockSignal("sync"), i_RCLKE=rd_en, i_RE=1,
                    i_RADDR=Cat(rd_addr, C(0, 11 - len(rd_addr))), o_RDATA=rdata)
        else:
            m.submodules.storage = mem = Memory(shape=self.width, depth=inner_depth, init=[])
            wr = mem.write_port()
            rd = mem.read_port(transparent_for=(wr,))
            m.d.comb += [wr.addr.eq(wr_addr), wr.data.eq(wr_data), wr.en.eq(wr_en),
                         rd.addr.eq(rd_addr), rd.en.eq(rd_en), rd_data.eq(rd.data)]

        produce, consume = Signal(range(inner_depth)), Signal(range(inner_depth))
        inner = Signal(range(inner_depth + 1))
        do_write = self.w_en & self.w_rdy
        do_read = (inner != 0) & (~self.r_rdy | self.r_en)
        m.d.comb += [
            self.w_rdy.eq(inner != inner_depth),
            wr_addr.eq(produce), wr_data.eq(self.w_data), wr_en.eq(do_write),
            rd_addr.eq(consume), rd_en.eq(do_read), self.r_data.eq(rd_data),
            self.level.eq(inner + self.r_rdy),
        ]

        def advance(ptr):
            if inner_depth & (inner_depth - 1) == 0:
                return ptr + 1       # a power of two wraps by itself
            return Mux(ptr == inner_depth - 1, 0, ptr + 1)

        with m.If(do_write):
            m.d.sync += produce.eq(advance(produce))
        with m.If(do_read):
            m.d.sync += [consume.eq(advance(consume)), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        with m.If(do_write & ~do_read):
            m.d.sync += inner.eq(inner + 1)
        with m.Elif(do_read & ~do_write):
            m.d.sync += inner.eq(inner - 1)
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
