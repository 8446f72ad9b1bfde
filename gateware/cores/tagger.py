"""Bob's photon time tagger: sample vectors in, 32-bit event records out, counters and histograms.

::

    det[ch] samples -> FirstEdge -> delay 1 -+
    sync samples    -> FirstEdge -----------+-> SlotClassifier -> ItemQueue -> RecordWriter -> FIFO -> o_records
                                                  |  flags -> counters, PhaseHistogram

The ports other than the samples and ``o_records`` are the registers of ``TAGGER_BLOCK``, named
after them (``slot_period``, ``dead_time[ch]``, ``raw[ch]``...), so ``gateware.top`` wires the
register bank to them by name and the cocotb test top drives them the same way. Record layouts,
widths and register shapes all come from ``gateware.spec.tagger``.
"""

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import wiring, stream, fifo
from amaranth.lib.wiring import In, Out

from ..spec.registers_base import Access
from ..spec.tagger import (TAGGER_BLOCK, CHANNELS, HIST_BINS, CHANNEL_COUNTERS,
                           GLOBAL_COUNTERS)
from .sampler import FirstEdge
from .tagger_hist import PhaseHistogram
from .tagger_records import ITEMS, ITEM_ROLES, ItemKind, ItemQueue, RecordWriter, BlockFIFO
from .tagger_counters import CounterFile
from .tagger_slots import SlotClassifier

__all__ = ["Tagger", "TaggerParams", "register_members", "COUNTER_REGISTERS", "COUNTER_WORDS", "COUNTERS_PORT"]

#: The counter registers, in address order (contiguous in the map): channel counters, then global.
COUNTER_REGISTERS = tuple(reg for reg in TAGGER_BLOCK.registers
                          if reg.name in CHANNEL_COUNTERS or reg.name in GLOBAL_COUNTERS)
#: Counter words (elements of ``COUNTER_REGISTERS``).
COUNTER_WORDS = sum(reg.count for reg in COUNTER_REGISTERS)
#: Port-name stem of the counters' shared read port when they live in block RAM.
COUNTERS_PORT = "counters"


@dataclass(frozen=True)
class TaggerParams:
    """What a board builds its tagger with (``boards.base.Board.tagger``); the host reads them
    back from ``tagger.info`` (``hist_bins``, ``fifo_words_div16``).

    ``hist_bins``: phase histogram bins per channel, a power of two up to ``HIST_BINS``, or 0 for
    no hardware histograms (the host then builds them from DETECTION records).
    ``fifo_words``: the event FIFO's depth in records (a multiple of 16). ``queue_depth``: the
    item queue's depth in clocks' worth of items. ``queue_memory``: keep the item queue in block
    RAM (``BlockFIFO``) rather than flip-flops. ``counter_memory``: the counters in block
    RAM (``CounterFile``) rather than 32-bit registers.
    """
    hist_bins: int = HIST_BINS
    fifo_words: int = 512
    queue_depth: int = 4
    queue_memory: bool = False
    counter_memory: bool = True

    def __post_init__(self):
        if self.hist_bins and (self.hist_bins > HIST_BINS or self.hist_bins < 2
                               or self.hist_bins & (self.hist_bins - 1)):
            raise ValueError(f"TaggerParams: hist_bins={self.hist_bins}; use 0 or a power of two "
                             f"from 2 to {HIST_BINS}")
        if self.fifo_words % 16 or self.fifo_words < 16:
            raise ValueError(f"TaggerParams: fifo_words={self.fifo_words}; use a multiple of 16")
        if self.queue_depth < 1:
            raise ValueError(f"TaggerParams: queue_depth={self.queue_depth}; use >= 1")

    def tagger_args(self):
        """Return the keyword arguments of ``Tagger`` for these parameters."""
        return {"fifo_words": self.fifo_words, "queue_depth": self.queue_depth,
                "hist_bins": self.hist_bins, "queue_memory": self.queue_memory,
                "counter_memory": self.counter_memory}


def register_members(block=TAGGER_BLOCK, *, counter_memory=False):
    """Return the signature members that mirror ``block``'s registers, from the core's view.

    RW and W1P registers are inputs, RO registers outputs; arrays are member arrays. A
    memory-backed register ``name`` becomes ``name__addr`` (in) and ``name__data`` (out). With
    ``counter_memory`` the counters (``COUNTER_REGISTERS``) share one such read port instead,
    ``counters__addr`` / ``counters__data``, word ``i`` being the ``i``-th counter element in
    address order.
    """
    members = {}
    if counter_memory:
        members[f"{COUNTERS_PORT}__addr"] = In(range(COUNTER_WORDS))
        members[f"{COUNTERS_PORT}__data"] = Out(32)
    for reg in block.registers:
        if counter_memory and reg in COUNTER_REGISTERS:
            continue
        if reg.memory:
            members[f"{reg.name}__addr"] = In(range(reg.count))
            members[f"{reg.name}__data"] = Out(reg.shape)
            continue
        init = reg.init if reg.access is Access.RW else 0
        if reg.layout is not None:
            init = reg.layout.from_bits(init)
        member = (Out if reg.access is Access.RO else In)(reg.shape, init=init)
        members[reg.name] = member.array(reg.count) if reg.count > 1 else member
    return members


class Tagger(wiring.Component):
    """The tagger for ``samples`` bins per clock, with an event FIFO of ``fifo_words`` records.

    ``det[ch]`` and ``sync`` take N-bit sample vectors (bit 0 earliest) from ``Sampler`` (or
    ``SimSampler``). ``o_records`` streams 32-bit records; ``o_words`` is how many wait in the
    FIFO. ``queue_depth`` is the item queue's depth in clocks' worth of items (the drop point).
    ``counter_memory``: keep the counters in block RAM (``CounterFile``, read through
    ``counters__addr``/``counters__data``; a read lags by a few dozen clocks) instead of one
    32-bit register port each -- the iCE40's choice, where flip-flops and the bank's read
    multiplexer are scarce. ``hist_bins`` and ``queue_memory``: see ``TaggerParams``.
    """

    def __init__(self, samples=1, *, fifo_words=512, queue_depth=4, counter_memory=False,
                 hist_bins=HIST_BINS, queue_memory=False):
        TaggerParams(hist_bins=hist_bins, fifo_words=fifo_words, queue_depth=queue_depth)  # checks
        self.hist_bins = hist_bins
        self.queue_memory = queue_memory
        self.samples = samples
        self.fifo_words = fifo_words
        self.queue_depth = queue_depth
        self.counter_memory = counter_memory
        members = {
            "det": In(samples).array(CHANNELS),
            "sync": In(samples),
            "o_records": Out(stream.Signature(32)),
            "o_words": Out(16),
        }
        members.update(register_members(counter_memory=counter_memory))
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        n = self.samples
        enable = self.control.enable
        # ``command.clear`` is a pulse decoded from the bus write: registered once here, it
        # reaches the tagger's wide fan-out (counters, queue, writer, classifier) from a
        # flip-flop, not through the link's write decode (the iCE40's critical path).
        clear = Signal()
        m.d.sync += clear.eq(self.command.clear)

        # -- front end: the sync leads the clicks by one clock (see SlotClassifier)
        m.submodules.cls = cls = SlotClassifier(n)
        m.submodules.sync_edge = sync_edge = FirstEdge(n)
        m.d.comb += [sync_edge.i_samples.eq(self.sync),
                     cls.sync_edge.eq(sync_edge.o_edge), cls.sync_index.eq(sync_edge.o_index)]
        for ch in range(CHANNELS):
            edge = FirstEdge(n)
            m.submodules[f"edge{ch}"] = edge
            m.d.comb += edge.i_samples.eq(self.det[ch])
            # The click register takes ``enable`` in, so the classifier's click path starts
            # from its own register (the classifier sees ``enable`` through a register too: both
            # one clock after the bank's write).
            m.d.sync += [cls.click[ch].eq(edge.o_edge & enable), cls.index[ch].eq(edge.o_index)]
            m.d.comb += cls.dead_time[ch].eq(self.dead_time[ch])
        m.d.sync += cls.enable.eq(enable)
        m.d.comb += [
            cls.clear.eq(clear),
            cls.slot_period.eq(self.slot_period), cls.frame_slots.eq(self.frame_slots),
            cls.sync_delay.eq(self.sync_delay),
            cls.gate_start.eq(self.gate.start), cls.gate_width.eq(self.gate.width),
        ]

        # -- items -> records -> FIFO
        m.submodules.queue = queue = ItemQueue(self.queue_depth, memory=self.queue_memory)
        m.submodules.writer = writer = RecordWriter()
        m.submodules.fifo = buf = BlockFIFO(width=32, depth=self.fifo_words)
        for k in range(ITEMS):
            m.d.comb += [queue.i_valid[k].eq(cls.item_valid[k]), queue.i_item[k].eq(cls.item[k])]
        m.d.comb += [queue.clear.eq(clear), writer.clear.eq(clear)]
        # After a drop with the FIFO over half full, keep dropping until it is half empty: under
        # sustained overload the stream then has a few long gaps instead of many short ones,
        # each of which costs an OVERFLOW and a FRAME record. (A burst that overfills the queue
        # while the FIFO has room does not start this.)
        dropping = Signal()
        half = self.fifo_words // 2
        with m.If(((queue.drop_events != 0) | (queue.drop_markers != 0)) & (buf.level > half)):
            m.d.sync += dropping.eq(1)
        with m.Elif(buf.level <= half):
            m.d.sync += dropping.eq(0)
        m.d.comb += queue.hold.eq(dropping)
        wiring.connect(m, queue.o_stream, writer.i_stream)
        m.d.comb += [
            buf.w_data.eq(writer.o_stream.payload), buf.w_en.eq(writer.o_stream.valid),
            writer.o_stream.ready.eq(buf.w_rdy),
            self.o_records.payload.eq(buf.r_data), self.o_records.valid.eq(buf.r_rdy),
            buf.r_en.eq(self.o_records.ready),
            self.o_words.eq(buf.level),
        ]

        # -- histograms (none: ``hist`` reads 0, the host builds them from the records)
        hist_clearing = Const(0)
        if self.hist_bins:
            m.submodules.hist = hist = PhaseHistogram(self.hist_bins)
            for ch in range(CHANNELS):
                m.d.comb += [hist.valid[ch].eq(cls.accepted[ch] | cls.out_of_gate[ch]),
                             hist.phase[ch].eq(cls.phase[ch])]
            m.d.comb += [hist.shift.eq(self.hist_shift), hist.clear.eq(clear),
                         hist.r_addr.eq(self.hist__addr), self.hist__data.eq(hist.r_data)]
            hist_clearing = hist.clearing

        # -- counters (wrap at 2**32; zeroed by clear)
        det_items = sum(cls.item_valid[k] & (cls.item[k].kind == ItemKind.DETECTION)
                        for k in range(ITEMS))
        dets = sum(1 for kind, *_ in ITEM_ROLES if kind == ItemKind.DETECTION)
        global_inc = {      # name: (increment, its largest value)
            "events": (det_items, dets),
            "dropped_events": (queue.drop_events, dets),
            "dropped_markers": (queue.drop_markers, ITEMS - dets),
            "frames": (cls.origin, 1),
            "sync_losses": (cls.item_valid[1], 1),
            "sync_acquired": (cls.item_valid[3], 1),
            "no_sync": (sum(cls.no_sync[ch] for ch in range(CHANNELS)), CHANNELS),
        }
        assert set(global_inc) == set(GLOBAL_COUNTERS), "a spec counter is not driven"
        increments = []      # (register name, channel or None, increment, bound), address order
        for reg in COUNTER_REGISTERS:
            if reg.name in CHANNEL_COUNTERS:
                increments += [(reg.name, ch, getattr(cls, reg.name)[ch], 1)
                               for ch in range(CHANNELS)]
            else:
                increments.append((reg.name, None, *global_inc[reg.name]))
        if self.counter_memory:
            m.submodules.counters = counters = CounterFile(
                COUNTER_WORDS, max_inc=[bound for *_, bound in increments])
            for k, (_, _, inc, _) in enumerate(increments):
                m.d.comb += counters.inc[k].eq(inc)
            m.d.comb += [counters.clear.eq(clear),
                         counters.r_addr.eq(getattr(self, f"{COUNTERS_PORT}__addr")),
                         getattr(self, f"{COUNTERS_PORT}__data").eq(counters.r_data)]
        else:
            for name, ch, inc, _ in increments:
                reg = getattr(self, name) if ch is None else getattr(self, name)[ch]
                with m.If(clear):
                    m.d.sync += reg.eq(0)
                with m.Else():
                    m.d.sync += reg.eq(reg + inc)

        # -- identity and status
        m.d.comb += [
            self.info.samples.eq(n), self.info.channels.eq(CHANNELS),
            self.info.hist_bins.eq(self.hist_bins), self.info.fifo_words_div16.eq(self.fifo_words // 16),
            self.status.synced.eq(cls.synced), self.status.clearing.eq(hist_clearing),
            self.status.fifo_bytes.eq(buf.level << 2),
        ]
        return m
