"""Slot assignment: clicks in bins against the frame origins set by Alice's sync.

Per clock the classifier sees, for each channel, whether it clicked and at which sample (bin)
``j`` of the clock, and handles the N bins of the clock at once. The algorithm (``docs/tagger.md``;
``hil.tagger_model`` is the same in numpy, bit for bit):

* A sync edge at bin ``s`` sets a *pending origin* at ``s + sync_delay``. There is one: an edge
  is ignored while the pending origin lies in a later clock than the edge's, or the same clock.
* When time reaches the pending origin a frame starts there: frame number + 1, slot 0, phase 0.
  Slots are ``slot_period`` bins; the frame ends after ``frame_slots`` slots. A new origin cuts
  the running frame short; a frame that ends with no origin is *sync lost* until the next one.
* Per channel, a click inside the channel's dead time (``dead_time`` bins after its last click
  that was not itself inside the dead time) is rejected; else, outside a frame it is a no-sync
  reject; else it counts in the phase histogram, and it is accepted if
  ``gate_start <= phase < gate_start + gate_width``.
* Accepted clicks of one slot merge into one event (channel mask, phase of the first click). The
  event is flushed as an item when its slot ends (slot boundary, new origin, frame end) or when
  the tagger is disabled; markers are items too.

Within one clock, with ``slot_period >= N``, the bins split into at most three segments: A (the
running slot), B (the next slot of the same frame, after a slot boundary at bin ``w``) and C (a new
frame from an origin at bin ``jp``), which is why at most ``ITEMS`` items appear in one clock.
Outputs are registered: items and per-click flags appear two clocks after the clicks come in.

Pipelining: where the boundaries fall in a clock (``jp``, ``w``, whether B is still in the frame)
and, for each bin ``j``, its segment, phase, in-frame flag and gate test depend only on the slot
position state, never on the clicks. The state of a clock is registered (``has_o``, ``jp``,
``wrap_first``, ``w``, ``phase0``, the distance to the slot boundary...), the bin rows are
computed from it and registered in the next clock, and the clicks, with the enable they were
gated with and the state the click-time logic reads, are delayed by a clock to meet them. So a
click only selects its bin's precomputed row (a multiplexer) before the dead time and the event
merge, and the rows' adders and compares start from flip-flops. The configuration is registered
too, with the gate limits per bin (``gate_start - j``, ``gate_start + gate_width - j``, each also
``+ slot_period``) so that each gate test is one comparison of ``phase0``. The records are the
same as without these stages; the one visible difference is the clock from which a change of
``slot_period``, ``frame_slots``, ``sync_delay``, ``gate_start``, ``gate_width`` or
``dead_time`` applies to the clicks (a register write while the tagger runs lands at an
arbitrary clock either way).
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.tagger import (CHANNELS, PHASE_BITS, SLOT_BITS, FRAME_BITS, DEAD_TIME_BITS,
                           SYNC_DELAY_BITS)
from .csr import or_tree
from .tagger_records import ITEMS, ItemKind, ItemLayout

__all__ = ["SlotClassifier", "TIME_BITS"]

#: Width of the bin-time counter (wraps; only equality is used, and a pending origin lies less
#: than ``2**SYNC_DELAY_BITS + N`` bins ahead, so two more bits than the delay are enough).
TIME_BITS = SYNC_DELAY_BITS + 2


class SlotClassifier(wiring.Component):
    """Assign clicks to frames and slots, apply dead time and gate, merge them into events.

    ``samples`` is N, the bins per clock (1, 2 or 4). ``sync_edge``/``sync_index`` must lead the
    clicks by one clock (the tagger registers the clicks), so a sync edge's origin is known
    before the clicks of its clock are classified; the classifier delays the clicks once more
    to meet their clock's bin rows. ``click`` must be 0 while ``enable`` is 0 (the tagger gates
    it in the click register).
    """

    def __init__(self, samples=1):
        self.samples = samples
        idx = range(max(samples, 2))
        super().__init__({
            "enable": In(1),
            "clear": In(1),
            "slot_period": In(PHASE_BITS),
            "frame_slots": In(SLOT_BITS),
            "sync_delay": In(SYNC_DELAY_BITS),
            "gate_start": In(PHASE_BITS),
            "gate_width": In(PHASE_BITS + 1),
            "dead_time": In(DEAD_TIME_BITS).array(CHANNELS),
            "click": In(1).array(CHANNELS),
            "index": In(idx).array(CHANNELS),
            "sync_edge": In(1),
            "sync_index": In(idx),
            # Registered outputs.
            "item_valid": Out(1).array(ITEMS),
            "item": Out(ItemLayout).array(ITEMS),
            "raw": Out(1).array(CHANNELS),
            "dead": Out(1).array(CHANNELS),
            "no_sync": Out(1).array(CHANNELS),
            "out_of_gate": Out(1).array(CHANNELS),
            "accepted": Out(1).array(CHANNELS),
            "phase": Out(PHASE_BITS).array(CHANNELS),
            "origin": Out(1),
            "synced": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        n = self.samples
        lb = (n - 1).bit_length()
        ph_w = PHASE_BITS + 2
        bins = range(max(n, 2))   # the values ``index`` can take
        en = self.enable

        # -- configuration, registered (with what is derived from it alone). Everything below
        # uses these copies, so a change reaches all of the classifier in the same clock.
        slot_period = Signal(PHASE_BITS, name="cfg_slot_period")
        frame_slots = Signal(SLOT_BITS, name="cfg_frame_slots")
        sync_delay = Signal(SYNC_DELAY_BITS, name="cfg_sync_delay")
        m.d.sync += [slot_period.eq(self.slot_period), frame_slots.eq(self.frame_slots),
                     sync_delay.eq(self.sync_delay)]
        lim_w = PHASE_BITS + 4
        # Gate of a bin-j click at phase base + j: lo_j <= base < hi_j (exact integers), with
        # lo_j = gate_start - j, hi_j = gate_start + gate_width - j for segment A (base = phase0)
        # and the same + slot_period for segment B (base = phase0 - slot_period). One pair of
        # limits serves two bins: with the odd bin's lo_k and hi_k, bin k - 1 tests
        # base > lo_k and base <= hi_k (the same compare chain with the other carry-in).
        gate_end = Signal(PHASE_BITS + 2, name="gate_end")     # one adder, shared below
        m.d.comb += gate_end.eq(self.gate_start + self.gate_width)
        gate_lim = {}
        for k in bins[1::2]:
            for seg, extra in (("a", 0), ("b", self.slot_period)):
                lo = Signal(signed(lim_w), name=f"cfg_gate_lo_{seg}{k}")
                hi = Signal(signed(lim_w), name=f"cfg_gate_hi_{seg}{k}")
                m.d.sync += [lo.eq(self.gate_start - k + extra), hi.eq(gate_end - k + extra)]
                gate_lim[seg, k] = (lo, hi)

        def in_gate_nx(seg, j, base):
            lo, hi = gate_lim[seg, j | 1]
            if j & 1:
                return (base >= lo) & (base < hi)
            return (base > lo) & (base <= hi)
        # Segment C's phases are 0..N-1: their gate test per phase; and whether a sync edge at
        # bin i has its origin inside the next clock (i + sync_delay < N). Against the small
        # constants these are tests of the low bits and a zero test of the rest (no adder).
        kb = (len(bins) - 1).bit_length()

        def le_small(x, p):        # x <= p for a constant p < 2**kb
            return (x[kb:] == 0) & (x[:kb] <= p)

        small_gate = Array(Signal(name=f"cfg_gate_small{p}") for p in bins)
        origin_next = Array(Signal(name=f"cfg_origin_next{i}") for i in bins)
        for p in bins:
            m.d.sync += [small_gate[p].eq(le_small(self.gate_start, p) & ~le_small(gate_end, p)),
                         origin_next[p].eq(le_small(self.sync_delay, n - 1 - p) if p < n
                                           else 0)]

        # -- slot position state
        now1 = Signal(TIME_BITS, init=n)  # bin time of the first sample of the NEXT clock's clicks
        m.d.sync += now1.eq(now1 + n)    # (a multiple of N: its low bits are always 0)
        synced = Signal()
        frame = Signal(FRAME_BITS, init=(1 << FRAME_BITS) - 1)   # the first origin makes frame 0
        slot0 = Signal(SLOT_BITS)        # slot of bin 0 of this clock (before any boundary)
        phase0 = Signal(PHASE_BITS + 1)  # its phase, 0..slot_period (slot_period: boundary at bin 0)
        pend_valid = Signal()
        pend_time = Signal(TIME_BITS)
        open_mask = Signal(CHANNELS)     # the running slot's event (slot0 of the current frame)
        open_phase = Signal(PHASE_BITS)
        # Dead time left, in bins from this clock's first: < dead_time, so it fits its width.
        rem = [Signal(DEAD_TIME_BITS, name=f"dead_left{ch}") for ch in range(CHANNELS)]
        rem_hz = [Signal(init=1, name=f"dead_hz{ch}") for ch in range(CHANNELS)]  # rem[lb:] == 0

        # -- where the boundaries fall in this clock, and per bin j its segment, phase, frame
        # and gate test: registered, computed a clock ahead from the next state below. Reset
        # values (all 0) are those of the reset state wherever they are seen: no origin, not
        # synced (so no click is in a frame and phases and gate tests are not looked at).
        has_o, wrap_first, b_in_frame = (Signal(name="bnd_has_o"), Signal(name="bnd_wrap_first"),
                                         Signal(name="bnd_b_in_frame"))
        jp = Signal(range(max(n, 2)), name="bnd_jp")     # origin at bin jp (if has_o)
        w = Signal(range(max(n, 2)), name="bnd_w")       # slot boundary at bin w (if wrap_first)
        bin_in_c = Array(Signal(name=f"bnd_in_c{j}") for j in bins)
        bin_in_b = Array(Signal(name=f"bnd_in_b{j}") for j in bins)
        bin_phase = Array(Signal(ph_w, name=f"bnd_phase{j}") for j in bins)
        bin_in_frame = Array(Signal(name=f"bnd_in_frame{j}") for j in bins)
        bin_in_gate = Array(Signal(name=f"bnd_in_gate{j}") for j in bins)

        # -- next state of the slot position (it never depends on the clicks)
        synced_nx = Signal(name="synced_nx")
        slot0_nx = Signal(SLOT_BITS, name="slot0_nx")
        phase0_nx = Signal(PHASE_BITS + 1, name="phase0_nx")
        b_in_frame_nx = Signal(name="b_in_frame_nx")   # synced_nx & slot0_nx + 1 < frame_slots
        with m.If(~en):
            m.d.comb += [synced_nx.eq(0), slot0_nx.eq(slot0), phase0_nx.eq(phase0),
                         b_in_frame_nx.eq(0)]
        with m.Elif(has_o):
            m.d.comb += [synced_nx.eq(1), slot0_nx.eq(0), phase0_nx.eq(n - jp),
                         b_in_frame_nx.eq(1 < frame_slots)]
        with m.Elif(wrap_first):
            m.d.comb += [synced_nx.eq(b_in_frame), slot0_nx.eq(slot0 + 1), phase0_nx.eq(n - w),
                         b_in_frame_nx.eq(b_in_frame & (slot0 + 2 < frame_slots))]
        with m.Else():
            m.d.comb += [synced_nx.eq(synced), slot0_nx.eq(slot0), phase0_nx.eq(phase0 + n),
                         b_in_frame_nx.eq(synced & (slot0 + 1 < frame_slots))]
        m.d.sync += [synced.eq(synced_nx), slot0.eq(slot0_nx), phase0.eq(phase0_nx),
                     b_in_frame.eq(b_in_frame_nx)]
        # The sync stage (one clock ahead): a new pending origin.
        new_edge = Signal()
        m.d.comb += new_edge.eq(en & self.sync_edge & (~pend_valid | has_o))
        with m.If(new_edge):
            m.d.sync += [pend_valid.eq(1),
                         pend_time.eq(now1 + self.sync_index + sync_delay)]
        with m.Elif(has_o | ~en):
            m.d.sync += pend_valid.eq(0)
        # Origin in the next clock: pend_time_nx[lb:] == now1[lb:], with now1[:lb] == 0.
        has_o_nx, jp_nx = Signal(name="has_o_nx"), Signal(range(max(n, 2)), name="jp_nx")
        with m.If(new_edge):
            m.d.comb += has_o_nx.eq(origin_next[self.sync_index])
            if lb:
                m.d.comb += jp_nx.eq(self.sync_index + sync_delay[:lb])
        with m.Else():
            m.d.comb += has_o_nx.eq(en & ~has_o & pend_valid & (pend_time[lb:] == now1[lb:]))
            if lb:
                m.d.comb += jp_nx.eq(pend_time[:lb])
        # Slot boundary in the next clock: at dist = slot_period - phase0 bins, if dist < N.
        dist = Signal(signed(PHASE_BITS + 3), name="dist_nx")
        m.d.comb += dist.eq(slot_period - phase0_nx)
        has_w_nx, w_nx = Signal(name="has_w_nx"), Signal(range(max(n, 2)), name="w_nx")
        m.d.comb += has_w_nx.eq(synced_nx & (dist < n))
        with m.If(dist > 0):
            m.d.comb += w_nx.eq(dist)
        wrap_first_nx = Signal(name="wrap_first_nx")
        m.d.comb += wrap_first_nx.eq(has_w_nx & (~has_o_nx | (w_nx < jp_nx)))
        dist_r = Signal(signed(PHASE_BITS + 3), name="bnd_dist")
        m.d.sync += [has_o.eq(has_o_nx), jp.eq(jp_nx), w.eq(w_nx), wrap_first.eq(wrap_first_nx),
                     dist_r.eq(dist)]
        # The bin rows of a clock, from its registered state (a clock later than the state,
        # which is why the clicks are delayed once more below).
        for j in bins:
            # Segment C (new frame from jp), else B (next slot from w), else A.
            in_c, in_b = Signal(name=f"in_c_row{j}"), Signal(name=f"in_b_row{j}")
            m.d.comb += [in_c.eq(has_o & (j >= jp)),
                         in_b.eq(~in_c & wrap_first & (j >= w))]
            c_index = Signal(range(max(n, 2)), name=f"c_index_row{j}")
            m.d.comb += c_index.eq(j - jp)
            with m.If(in_c):
                m.d.sync += [bin_phase[j].eq(j - jp), bin_in_frame[j].eq(1),
                             bin_in_gate[j].eq(small_gate[c_index])]
            with m.Elif(in_b):
                m.d.sync += [bin_phase[j].eq(j - dist_r), bin_in_frame[j].eq(b_in_frame),
                             bin_in_gate[j].eq(in_gate_nx("b", j, phase0))]
            with m.Else():
                m.d.sync += [bin_phase[j].eq(phase0 + j), bin_in_frame[j].eq(synced),
                             bin_in_gate[j].eq(in_gate_nx("a", j, phase0))]
            m.d.sync += [bin_in_c[j].eq(in_c), bin_in_b[j].eq(in_b)]

        # -- click time: the clicks (and the enable they were gated with) a clock later, with
        # the state of their clock, delayed to meet the rows.
        click = [Signal(name=f"click_d{ch}") for ch in range(CHANNELS)]
        index = [Signal(range(max(n, 2)), name=f"index_d{ch}") for ch in range(CHANNELS)]
        en_c, has_o_c, wrap_first_c, synced_c, b_in_frame_c = (
            Signal(name=f"{x}_click") for x in ("en", "has_o", "wrap_first", "synced",
                                                 "b_in_frame"))
        slot0_c = Signal(SLOT_BITS, name="slot0_click")
        m.d.sync += [click[ch].eq(self.click[ch]) for ch in range(CHANNELS)]
        m.d.sync += [index[ch].eq(self.index[ch]) for ch in range(CHANNELS)]
        m.d.sync += [en_c.eq(en), has_o_c.eq(has_o), wrap_first_c.eq(wrap_first),
                     synced_c.eq(synced), b_in_frame_c.eq(b_in_frame), slot0_c.eq(slot0)]

        # -- per channel: the click's bin picks its segment, phase and gate test; dead time
        seg_a, seg_b, seg_c = [], [], []
        for ch in range(CHANNELS):
            j = index[ch]
            in_c = Signal(name=f"in_c{ch}")
            in_b = Signal(name=f"in_b{ch}")
            phase = Signal(ph_w, name=f"phase{ch}")
            in_frame = Signal(name=f"in_frame{ch}")
            in_gate = Signal(name=f"in_gate{ch}")
            m.d.comb += [in_c.eq(bin_in_c[j]), in_b.eq(bin_in_b[j]), phase.eq(bin_phase[j]),
                         in_frame.eq(bin_in_frame[j]), in_gate.eq(bin_in_gate[j])]

            raw = Signal(name=f"raw{ch}")
            live = Signal(name=f"live{ch}")
            r = rem[ch]
            hz = rem_hz[ch]
            # j >= rem, with j < N = 2**lb: rem's high bits zero (the registered flag ``hz``)
            # and its low bits <= j. ``click`` is already gated by ``enable``.
            m.d.comb += [raw.eq(click[ch]), live.eq(raw & hz & (r[:lb] <= j))]
            # Non-paralysable: only a click outside the dead time restarts it. Next clock's
            # rem = max(left - N, 0) with left = j + dead_time (a live click) or rem. N is a
            # power of two, so "- N" is a decrement of the high bits (one shared borrow chain),
            # the low bits pass: for a live click, d = dead_time[:lb] + j gives the low bits and
            # a carry c into the high bits, and j + dead_time - N = (dt_high + c - 1) * N + d[:lb].
            dt = self.dead_time[ch]
            d = Signal(lb + 1, name=f"dead_low{ch}")
            m.d.comb += d.eq(dt[:lb] + j)
            carry = live & d[lb]
            high_in = Signal(DEAD_TIME_BITS - lb, name=f"dead_high{ch}")
            high_dec = Signal(DEAD_TIME_BITS - lb, name=f"dead_dec{ch}")
            m.d.comb += [high_in.eq(Mux(live, dt[lb:], r[lb:])), high_dec.eq(high_in - 1)]
            # high_in == 0 and next clock's hz from flags of the dead time and of rem (the next
            # high bits are dead_time's with a carry, else high_in - 1: zero if high_in is 1).
            dt_hz, dt_h1, r_h1 = dt[lb:] == 0, dt[lb:] == 1, r[lb:] == 1
            zeroed = ~en_c | (~carry & Mux(live, dt_hz, hz))
            m.d.sync += hz.eq(zeroed | Mux(carry, dt_hz, Mux(live, dt_h1, r_h1)))
            with m.If(zeroed):
                m.d.sync += r.eq(0)
            with m.Else():
                m.d.sync += r.eq(Cat(Mux(live, d[:lb], r[:lb]), Mux(carry, dt[lb:], high_dec)))

            in_sync = live & in_frame
            a = Signal(name=f"acc{ch}")
            m.d.comb += a.eq(in_sync & in_gate)
            m.d.sync += [
                self.raw[ch].eq(raw), self.dead[ch].eq(raw & ~live),
                self.no_sync[ch].eq(live & ~in_frame), self.out_of_gate[ch].eq(in_sync & ~in_gate),
                self.accepted[ch].eq(a), self.phase[ch].eq(Mux(in_sync, phase, 0)),
            ]
            seg_a.append(a & ~in_b & ~in_c)
            seg_b.append(a & in_b)
            seg_c.append(a & in_c)

        # Earliest accepted click per segment: the lowest bin holding one (phases grow with the
        # bin inside a segment, and each bin's phase row is precomputed). A segment's phase is
        # a priority selection of the rows by "bin j holds one of its clicks" (``hold``),
        # lowest bin first; it is only looked at when the segment has a click. Then the open
        # event's phase and the items' are 2:1 selections by registered state: a shallow path.
        rows = [bin_phase[j][:PHASE_BITS] for j in bins]

        def first_phase(sel):
            hold = [Cat(sel[ch] & (index[ch] == j) for ch in range(CHANNELS)).any()
                    for j in bins]
            if len(bins) <= 2:
                return Mux(hold[0], rows[0], rows[1])
            # Wider clocks: AND-OR of the rows with one-hot "first bin" selects.
            first = [hold[j] & ~Cat(hold[:j]).any() if j else hold[j] for j in bins]
            return or_tree([rows[j] & first[j].replicate(PHASE_BITS) for j in bins])

        phase_a, phase_b, phase_c = (Signal(PHASE_BITS, name=f"first_phase_{x}") for x in "abc")
        m.d.comb += [phase_a.eq(first_phase(seg_a)), phase_b.eq(first_phase(seg_b)),
                     phase_c.eq(first_phase(seg_c))]
        mask_a, mask_b, mask_c = Cat(*seg_a), Cat(*seg_b), Cat(*seg_c)
        open_nz = open_mask != 0
        ev_a_mask = Signal(CHANNELS)
        ev_a_phase = Signal(PHASE_BITS)
        m.d.comb += [ev_a_mask.eq(open_mask | mask_a),
                     ev_a_phase.eq(Mux(open_nz, open_phase, phase_a))]
        # The open event's phase next clock: C's first (origin), else B's (slot boundary), else
        # A's event (the open one's, or A's first).
        next_phase = Signal(PHASE_BITS)
        m.d.comb += next_phase.eq(Mux(has_o_c, phase_c, Mux(wrap_first_c, phase_b, ev_a_phase)))

        # -- items, in time order: A's event, sync lost at w, B's event, sync acquired at jp
        def item(k, valid, kind, frame_no, slot=0, mask=0, phase=0):
            m.d.sync += [self.item_valid[k].eq(valid),
                         self.item[k].kind.eq(kind), self.item[k].frame.eq(frame_no),
                         self.item[k].slot.eq(slot), self.item[k].mask.eq(mask),
                         self.item[k].phase.eq(phase)]

        en, has_o, wrap_first, synced, b_in_frame, slot0 = (en_c, has_o_c, wrap_first_c, synced_c,
                                                            b_in_frame_c, slot0_c)
        item(0, ((wrap_first | has_o) | ~en) & (ev_a_mask != 0), ItemKind.DETECTION, frame,
             slot0, ev_a_mask, ev_a_phase)
        item(1, en & wrap_first & synced & ~b_in_frame, ItemKind.SYNC_LOST, frame)
        item(2, en & wrap_first & has_o & (mask_b != 0), ItemKind.DETECTION, frame,
             slot0 + 1, mask_b, phase_b)
        item(3, en & has_o & ~Mux(wrap_first, b_in_frame, synced), ItemKind.SYNC_ACQUIRED,
             frame + 1)
        m.d.sync += [self.origin.eq(en & has_o), self.synced.eq(synced)]

        m.d.sync += frame.eq(Mux(self.clear, frame.init, Mux(en & has_o, frame + 1, frame)))
        m.d.sync += open_phase.eq(next_phase)
        with m.If(~en):
            m.d.sync += open_mask.eq(0)
        with m.Elif(has_o):
            m.d.sync += open_mask.eq(mask_c)
        with m.Elif(wrap_first):
            m.d.sync += open_mask.eq(mask_b)
        with m.Else():
            m.d.sync += open_mask.eq(ev_a_mask)
        return m
