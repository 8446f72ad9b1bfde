"""From classified events to 32-bit records: the item queue, the record writer, the serialiser.

An *item* is what the slot classifier produces: a detection event (frame, slot, mask, phase) or a
sync marker. Up to ``ITEMS`` items a clock enter ``ItemQueue`` as one group; it is the tagger's
only drop point: a clock's items that find it full are dropped and counted, and the next group it
takes carries the counts (``gap_events``, ``gap_markers``). ``RecordWriter`` takes the groups
and turns each item into records, one record a clock: an OVERFLOW record first if the group
carries a gap, a FRAME record before a detection whose frame differs from the last FRAME record
sent (or after an overflow), then the item's own record. It stalls while the event FIFO is
full, so the queue fills and drops; nothing is lost silently.

Timing (the iCE40 at 30 MHz): the queue's head group sits on a block RAM's output, and the
writer's decision to finish it drives that RAM's read enable in the same clock. So that decision
reads only flags and flip-flops: whatever needs wide logic is worked out when a group is written
(whether it carries a gap; whether its frame differs from the frame of the last detection
queued before it, which is the last FRAME record's frame whenever one was sent since the last
OVERFLOW or ``clear``; its first item; whether it has at most one), the ``+ 1`` of B's slot and
of SYNC_ACQUIRED's frame are the classifier's own registered item fields, the writer keeps the
position of later items in flip-flops, and records leave through an output register.
"""

from amaranth import *
from amaranth.lib import wiring, data, enum, fifo, stream
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .csr import or_tree
from .sampler import _family

from ..spec.tagger import (CHANNELS, PHASE_BITS, SLOT_BITS, FRAME_BITS, RecordKind, MarkerCode,
                           DetectionRecord, FrameRecord, OverflowRecord, MarkerRecord)

__all__ = ["ItemKind", "ItemLayout", "GroupLayout", "ITEMS", "ITEM_ROLES",
           "ItemQueue", "BlockFIFO", "RecordWriter", "RecordSerializer"]

#: Items the slot classifier can produce in one clock (see ``tagger_slots``).
ITEMS = 4


class ItemKind(enum.Enum, shape=2):
    """What a queued item is."""
    DETECTION = 0
    SYNC_LOST = 1
    SYNC_ACQUIRED = 2
    #: Only a gap: the queue had room again before any item came, so the OVERFLOW record is
    #: sent at once rather than with the next item (a group with no valid item).
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

def _sat_add(m, a, b, width):
    """Return ``a + b`` saturated at ``2**width - 1``."""
    total = Signal(width + 4)
    m.d.comb += total.eq(a + b)
    return Mux(total >> width != 0, (1 << width) - 1, total[:width])


def _lowest(bits):
    """Return the lowest set bit of ``bits`` (a value of ITEMS bits) as a list of one-hot bits."""
    return [bits[k] & ~bits[:k].any() if k else bits[k] for k in range(ITEMS)]


def _at_most_one(bits):
    """Return whether at most one of the ITEMS bits of ``bits`` is set."""
    return ~Cat(bits[a] & bits[b] for a in range(ITEMS) for b in range(a + 1, ITEMS)).any()


#: The classifier's item slots, in time order within a clock: (kind, frame + ?, slot + ?, which
#: event). Slot 0 is segment A's event, 1 sync lost, 2 segment B's event, 3 sync acquired.
ITEM_ROLES = (
    (ItemKind.DETECTION, 0, 0, "a"),
    (ItemKind.SYNC_LOST, 0, 0, None),
    (ItemKind.DETECTION, 0, 1, "b"),
    (ItemKind.SYNC_ACQUIRED, 1, 0, None),
)

#: One clock's items, stored once: the shared frame and slot, the two events, the gap before,
#: B's slot and SYNC_ACQUIRED's frame (the ``+ 1`` of ``ITEM_ROLES``, as the classifier made
#: them) and two flags computed on the way in.
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
    "slot_next": SLOT_BITS,
    "frame_next": FRAME_BITS,
    #: ``gap_events`` or ``gap_markers`` is not 0.
    "has_gap": 1,
    #: ``frame`` differs from the frame of the last group queued with a detection.
    "new_frame": 1,
    #: One-hot: the first valid item (0 for a gap-only group).
    "first_at": ITEMS,
    #: The first valid item is a detection.
    "first_det": 1,
    #: No valid item.
    "empty": 1,
    #: At most one valid item.
    "single": 1,
})


class ItemQueue(wiring.Component):
    """Queue the classifier's items (up to ``ITEMS`` a clock, in the roles of ``ITEM_ROLES``)
    and hand them out as ``GroupLayout`` groups (``RecordWriter`` takes them apart).

    A clock's items are stored as one group (``GroupLayout``) in a ``depth``-group FIFO, so
    taking four items costs no more than taking one. A clock whose group finds the FIFO full
    (or ``hold`` set) is dropped whole and counted (``drop_events``, ``drop_markers``: how many
    this clock); the counts ride on the next group taken, or on a group of their own (no valid
    item) in the first clock with room and no items. ``clear`` forgets the gap.

    ``memory``: the groups live in block RAM (``BlockFIFO``: a group reaches the output one
    clock later) instead of ``depth`` x ``GroupLayout.size`` flip-flops.

    The ``+ 1`` of ``ITEM_ROLES`` are taken from the items (``i_item[2].slot``,
    ``i_item[3].frame``), which must be the roles' values whether or not the item is valid.
    """

    def __init__(self, depth=2, *, memory=False):
        self.depth = depth
        self.memory = memory
        super().__init__({
            "i_valid": In(1).array(ITEMS),
            "i_item": In(ItemLayout).array(ITEMS),
            "o_stream": Out(stream.Signature(GroupLayout)),
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
            incoming.slot_next.eq(self.i_item[2].slot), incoming.frame_next.eq(self.i_item[3].frame),
            incoming.has_gap.eq(has_gap),
            incoming.empty.eq(~any_item),
            incoming.single.eq(_at_most_one(valid)),
            groups.w_data.eq(incoming.as_value()),
        ]
        m.d.comb += incoming.first_at.eq(Cat(*_lowest(valid)))
        m.d.comb += incoming.first_det.eq(Cat(incoming.first_at[k] for k, role in
                                              enumerate(ITEM_ROLES)
                                              if role[0] == ItemKind.DETECTION).any())
        room = groups.w_rdy & ~self.hold
        take = Signal()
        m.d.comb += [take.eq(room & (any_item | has_gap)), groups.w_en.eq(take)]
        # The frame of the last detection queued: all queued items reach the writer in order.
        det_frame = Signal(FRAME_BITS)
        m.d.comb += incoming.new_frame.eq(self.i_item[0].frame != det_frame)
        with m.If(take & (self.i_valid[0] | self.i_valid[2])):
            m.d.sync += det_frame.eq(self.i_item[0].frame)
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

        m.d.comb += [self.o_stream.payload.eq(groups.r_data), self.o_stream.valid.eq(groups.r_rdy),
                     groups.r_en.eq(self.o_stream.ready)]
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
    pointers with words inside mean full). ``w_rdy`` is a flip-flop (not a compare of the
    level), so a writer's decision does not wait for it.
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
        not_full = Signal(init=1)
        m.d.comb += [
            self.w_rdy.eq(not_full),
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
            m.d.sync += [inner.eq(inner + 1), not_full.eq(inner != inner_depth - 1)]
        with m.Elif(do_read & ~do_write):
            m.d.sync += [inner.eq(inner - 1), not_full.eq(1)]
        return m


class RecordWriter(wiring.Component):
    """Write each queued group's items as records into ``o_stream``, one record a clock: an
    OVERFLOW record first if the group carries a gap, then per item (in ``ITEM_ROLES`` order) a
    FRAME record if it is a detection that needs one, and its own record.

    A detection needs a FRAME record if none was sent since the last OVERFLOW or ``clear``, or
    if its frame differs from the previous detection's (the group's ``new_frame``, for its first
    detection; a group's later detection is in the same frame). ``clear`` forgets the last
    frame sent, so the next detection gets a FRAME record. The decision to take a group (which
    feeds the queue's read enable) reads only the group's flags and flip-flops; records leave
    through a register (``o_stream`` is driven by flip-flops only).
    """

    i_stream: In(stream.Signature(GroupLayout))
    o_stream: Out(stream.Signature(32))
    clear: In(1)

    def elaborate(self, platform):
        m = Module()
        head = self.i_stream.payload
        valid = self.i_stream.valid
        first = Signal(init=1)       # no item of the head group written yet
        cur = Signal(ITEMS)          # one-hot: the item to write next (when not ``first``)
        cur_last = Signal()          # ... and it is the group's last
        det_seen = Signal()          # a detection of the head group was written
        last_valid = Signal()        # a FRAME record went out since the last OVERFLOW or clear
        gap_done = Signal()          # the head group's OVERFLOW record went out
        frame_done = Signal()        # the current item's FRAME record went out

        cur_det = Signal()           # ``cur`` is a detection

        def cut(name, value):
            """``value`` as a kept wire: a LUT output of its own, so the decision below maps
            as the few LUT levels written here (yosys would otherwise trade its depth for
            area, the RAM's read enable not being its critical path)."""
            sig = Signal(len(value), name=name, attrs={"keep": 1})
            m.d.comb += sig.eq(value)
            return sig

        # This beat: item k (one-hot ``at``), is it the group's last, a detection, a new frame.
        at = [Mux(first, head.first_at[k], cur[k]) for k in range(ITEMS)]
        dets = [k for k, role in enumerate(ITEM_ROLES) if role[0] == ItemKind.DETECTION]
        last = cut("beat_last", Mux(first, head.single, cur_last))
        is_det = cut("beat_det", Mux(first, head.first_det, cur_det))
        is_gap = cut("beat_gap", first & head.empty)
        has_gap = cut("beat_overflow", first & head.has_gap & ~gap_done)
        frame_due = cut("beat_frame_due",
                        ~frame_done & (~last_valid | (head.new_frame & ~det_seen)))
        need_frame = is_det & frame_due

        def pick(pairs):
            return or_tree([value & sel.replicate(len(value)) for sel, value in pairs])

        roles = list(enumerate(ITEM_ROLES))
        frame_no = pick([(at[k], head.frame_next if role[1] else head.frame) for k, role in roles])
        slot = pick([(at[k], head.slot_next if role[2] else head.slot)
                     for k, role in roles if role[0] == ItemKind.DETECTION])
        mask = pick([(at[k], head[f"mask_{role[3]}"]) for k, role in roles if role[3]])
        phase = pick([(at[k], head[f"phase_{role[3]}"]) for k, role in roles if role[3]])
        lost = Cat(at[k] for k, role in roles if role[0] == ItemKind.SYNC_LOST).any()

        overflow = Signal(OverflowRecord)
        frame = Signal(FrameRecord)
        det = Signal(DetectionRecord)
        marker = Signal(MarkerRecord)
        m.d.comb += [
            overflow.kind.eq(RecordKind.OVERFLOW), overflow.events.eq(head.gap_events),
            overflow.markers.eq(head.gap_markers),
            frame.kind.eq(RecordKind.FRAME), frame.frame.eq(frame_no),
            det.kind.eq(RecordKind.DETECTION), det.mask.eq(mask), det.slot.eq(slot),
            det.phase.eq(phase),
            marker.kind.eq(RecordKind.MARKER), marker.frame.eq(frame_no),
            marker.code.eq(Mux(lost, MarkerCode.SYNC_LOST, MarkerCode.SYNC_ACQUIRED)),
        ]
        # OVERFLOW, else FRAME, else the item's own record: one-hot selects, AND-OR.
        record = Signal(32)
        m.d.comb += record.eq(or_tree([
            rec.as_value() & sel.replicate(32) for sel, rec in (
                (has_gap, overflow), (~has_gap & need_frame, frame),
                (~has_gap & ~need_frame & is_det, det), (~has_gap & ~is_det, marker))]))

        produce = valid & (has_gap | ~is_gap)
        out_valid = Signal()
        out_data = Signal(32)
        advance = ~out_valid | self.o_stream.ready
        m.d.comb += [self.o_stream.valid.eq(out_valid), self.o_stream.payload.eq(out_data)]
        with m.If(advance):
            m.d.sync += [out_valid.eq(produce), out_data.eq(record)]

        # The item is done: its own record went out (or, for a gap-only group, the OVERFLOW).
        go = cut("beat_go", advance & ~(is_det & frame_due))
        item_done = cut("beat_done", valid & ~has_gap & (is_gap | go))
        with m.If(advance & produce & has_gap):
            m.d.sync += [gap_done.eq(1), last_valid.eq(0)]
        with m.If(advance & produce & ~has_gap & need_frame):
            m.d.sync += [frame_done.eq(1), last_valid.eq(1)]
        # The next item: the lowest valid one above this one.
        above = [Cat(at[:k]).any() if k else C(0) for k in range(ITEMS)]   # k is above this item
        rest = Cat(head.valid[k] & above[k] for k in range(ITEMS))
        with m.If(item_done):
            m.d.sync += [frame_done.eq(0), det_seen.eq(det_seen | is_det)]
            with m.If(last):
                m.d.comb += self.i_stream.ready.eq(1)
                m.d.sync += [first.eq(1), gap_done.eq(0), det_seen.eq(0)]
            with m.Else():
                m.d.sync += [first.eq(0),
                             cur_last.eq(_at_most_one(rest))]
                nxt = _lowest(rest)
                m.d.sync += [cur.eq(Cat(*nxt)), cur_det.eq(Cat(nxt[k] for k in dets).any())]
        with m.If(self.clear):
            m.d.sync += [last_valid.eq(0), frame_done.eq(0)]
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
