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
Outputs are registered: items and per-click flags appear one clock after the clicks.

Pipelining: where the boundaries fall in a clock (``jp``, ``w``, whether B is still in the frame)
and, for each bin ``j``, its segment, phase, in-frame flag and gate test depend only on the slot
position state, never on the clicks. They are computed one clock ahead from the *next* state and
registered, so a click only selects its bin's precomputed row (a multiplexer) before the dead time
and the event merge. The records are the same as without this stage; the one visible difference
is that a change of ``slot_period``, ``frame_slots``, ``gate_start`` or ``gate_width`` while
synced takes effect one clock later.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..spec.tagger import (CHANNELS, PHASE_BITS, SLOT_BITS, FRAME_BITS, DEAD_TIME_BITS,
                           SYNC_DELAY_BITS)
from .tagger_records import ITEMS, ItemKind, ItemLayout

__all__ = ["SlotClassifier", "TIME_BITS"]

#: Width of the bin-time counter (wraps; only equality and differences are used).
TIME_BITS = 32


class SlotClassifier(wiring.Component):
    """Assign clicks to frames and slots, apply dead time and gate, merge them into events.

    ``samples`` is N, the bins per clock (1, 2 or 4). ``sync_edge``/``sync_index`` must lead the
    clicks by one clock (the tagger delays the clicks), so a sync edge's origin is known before
    the clicks of its clock are classified.
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

    def _boundaries(self, m, synced, slot0, phase0, pend_valid, pend_time, now):
        """Return where this clock's boundaries fall and, per bin ``j``, its segment, phase, frame
        and gate test, from the slot position state alone (no clicks): a dict of values."""
        n = self.samples
        lb = (n - 1).bit_length()
        ph_w = PHASE_BITS + 2
        b = {}
        b["has_o"] = Signal(name="nx_has_o")
        b["jp"] = Signal(range(max(n, 2)), name="nx_jp")
        m.d.comb += b["has_o"].eq(pend_valid & (pend_time[lb:] == now[lb:]))
        if lb:
            m.d.comb += b["jp"].eq(pend_time[:lb])
        dist = Signal(signed(PHASE_BITS + 3), name="nx_dist")
        m.d.comb += dist.eq(self.slot_period - phase0)
        b["has_w"] = Signal(name="nx_has_w")
        b["w"] = Signal(range(max(n, 2)), name="nx_w")
        m.d.comb += b["has_w"].eq(synced & (dist < n))
        with m.If(dist > 0):
            m.d.comb += b["w"].eq(dist)
        b["wrap_first"] = Signal(name="nx_wrap_first")
        m.d.comb += b["wrap_first"].eq(b["has_w"] & (~b["has_o"] | (b["w"] < b["jp"])))
        b["b_in_frame"] = Signal(name="nx_b_in_frame")
        m.d.comb += b["b_in_frame"].eq(synced & (slot0 + 1 < self.frame_slots))
        # Per bin j (every value ``index`` can take): segment C (new frame), B (next slot) or A.
        for j in range(max(n, 2)):
            in_c, in_b = Signal(name=f"nx_in_c_{j}"), Signal(name=f"nx_in_b_{j}")
            m.d.comb += [in_c.eq(b["has_o"] & (j >= b["jp"])),
                         in_b.eq(~in_c & b["wrap_first"] & (j >= b["w"]))]
            # The three candidate phases and their gate tests side by side, then the choice.
            cands = []
            for seg, value in (("c", j - b["jp"]), ("b", phase0 + j - self.slot_period),
                               ("a", phase0 + j)):
                phase = Signal(ph_w, name=f"nx_phase_{seg}{j}")
                offset = Signal(ph_w + 1, name=f"nx_gate_off_{seg}{j}")
                m.d.comb += [phase.eq(value), offset.eq(phase - self.gate_start)]
                cands.append((phase, (phase >= self.gate_start) & (offset < self.gate_width)))
            phase, in_frame, in_gate = (Signal(ph_w, name=f"nx_phase{j}"),
                                        Signal(name=f"nx_in_frame{j}"), Signal(name=f"nx_in_gate{j}"))
            with m.If(in_c):
                m.d.comb += [phase.eq(cands[0][0]), in_gate.eq(cands[0][1]), in_frame.eq(1)]
            with m.Elif(in_b):
                m.d.comb += [phase.eq(cands[1][0]), in_gate.eq(cands[1][1]),
                             in_frame.eq(b["b_in_frame"])]
            with m.Else():
                m.d.comb += [phase.eq(cands[2][0]), in_gate.eq(cands[2][1]), in_frame.eq(synced)]
            b[f"in_c{j}"], b[f"in_b{j}"] = in_c, in_b
            b[f"phase{j}"], b[f"in_frame{j}"], b[f"in_gate{j}"] = phase, in_frame, in_gate
        return b

    def elaborate(self, platform):
        m = Module()
        n = self.samples
        ph_w = PHASE_BITS + 2
        bins = range(max(n, 2))   # the values ``index`` can take

        # -- slot position state: registers, and their next values (``*_nx``, combinational)
        now = Signal(TIME_BITS)          # bin time of the first sample of this clock's clicks
        synced = Signal()
        frame = Signal(FRAME_BITS, init=(1 << FRAME_BITS) - 1)   # the first origin makes frame 0
        slot0 = Signal(SLOT_BITS)        # slot of bin 0 of this clock (before any boundary)
        phase0 = Signal(PHASE_BITS + 1)  # its phase, 0..slot_period (slot_period: boundary at bin 0)
        pend_valid = Signal()
        pend_time = Signal(TIME_BITS)
        state = [now, synced, slot0, phase0, pend_valid, pend_time]
        now_nx, synced_nx, slot0_nx, phase0_nx, pend_valid_nx, pend_time_nx = nx = [
            Signal.like(s, name=f"{s.name}_nx") for s in state]
        m.d.comb += [x.eq(s) for x, s in zip(nx, state)]
        m.d.sync += [s.eq(x) for x, s in zip(nx, state)]
        open_mask = Signal(CHANNELS)     # the running slot's event (slot0 of the current frame)
        open_phase = Signal(PHASE_BITS)
        rem = [Signal(DEAD_TIME_BITS + 1, name=f"dead_left{ch}") for ch in range(CHANNELS)]

        # -- where the boundaries fall in this clock: computed from the next state one clock
        # ahead and registered (they depend on the state only, not on the clicks). Their reset
        # values are those of the reset state wherever they are seen: not synced, no origin.
        ahead = self._boundaries(m, synced_nx, slot0_nx, phase0_nx, pend_valid_nx, pend_time_nx,
                                 now_nx)
        cur = {k: Signal.like(v, name=k, init=0) for k, v in ahead.items()}
        m.d.sync += [cur[k].eq(v) for k, v in ahead.items()]
        has_o, jp, w = cur["has_o"], cur["jp"], cur["w"]
        wrap_first, b_in_frame = cur["wrap_first"], cur["b_in_frame"]
        bin_in_c = Array(cur[f"in_c{j}"] for j in bins)
        bin_in_b = Array(cur[f"in_b{j}"] for j in bins)
        bin_phase = Array(cur[f"phase{j}"] for j in bins)
        bin_in_frame = Array(cur[f"in_frame{j}"] for j in bins)
        bin_in_gate = Array(cur[f"in_gate{j}"] for j in bins)

        # -- per channel: the click's bin picks its segment, phase and gate test; dead time
        seg_a, seg_b, seg_c, acc, phases, flags = [], [], [], [], [], []
        for ch in range(CHANNELS):
            j = self.index[ch]
            in_c = Signal(name=f"in_c{ch}")
            in_b = Signal(name=f"in_b{ch}")
            phase = Signal(ph_w, name=f"phase{ch}")
            in_frame = Signal(name=f"in_frame{ch}")
            in_gate = Signal(name=f"in_gate{ch}")
            m.d.comb += [in_c.eq(bin_in_c[j]), in_b.eq(bin_in_b[j]), phase.eq(bin_phase[j]),
                         in_frame.eq(bin_in_frame[j]), in_gate.eq(bin_in_gate[j])]

            raw = Signal(name=f"raw{ch}")
            live = Signal(name=f"live{ch}")
            m.d.comb += [raw.eq(self.enable & self.click[ch]), live.eq(raw & (j >= rem[ch]))]
            # Non-paralysable: only a click outside the dead time restarts it.
            left = Signal(DEAD_TIME_BITS + 3, name=f"left{ch}")
            with m.If(live):
                m.d.comb += left.eq(j + self.dead_time[ch])
            with m.Else():
                m.d.comb += left.eq(rem[ch])
            with m.If(~self.enable):
                m.d.sync += rem[ch].eq(0)
            with m.Elif(left > n):
                m.d.sync += rem[ch].eq(left - n)
            with m.Else():
                m.d.sync += rem[ch].eq(0)

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
            acc.append(a)
            phases.append(phase)

        def first_phase(sel, name):
            """Phase of the earliest accepted click among channels ``sel`` (the lowest bin: phases
            grow with the bin inside a segment)."""
            best = Signal(PHASE_BITS, name=f"{name}_phase")
            best_j = Signal(range(n + 1), name=f"{name}_j", init=n)
            for ch in range(CHANNELS):
                prev_j = best_j
                cand = Signal(range(n + 1), name=f"{name}_j{ch}")
                cand_p = Signal(PHASE_BITS, name=f"{name}_p{ch}")
                take = sel[ch] & (self.index[ch] < prev_j)
                m.d.comb += [cand.eq(Mux(take, self.index[ch], prev_j)),
                             cand_p.eq(Mux(take, phases[ch], best if ch else 0))]
                best_j, best = cand, cand_p
            return best

        mask_a, mask_b, mask_c = Cat(*seg_a), Cat(*seg_b), Cat(*seg_c)
        phase_a = first_phase(seg_a, "a")
        phase_b = first_phase(seg_b, "b")
        phase_c = first_phase(seg_c, "c")
        ev_a_mask = Signal(CHANNELS)
        ev_a_phase = Signal(PHASE_BITS)
        m.d.comb += [ev_a_mask.eq(open_mask | mask_a),
                     ev_a_phase.eq(Mux(open_mask != 0, open_phase, phase_a))]

        # -- items, in time order: A's event, sync lost at w, B's event, sync acquired at jp
        def item(k, valid, kind, frame_no, slot=0, mask=0, phase=0):
            m.d.sync += [self.item_valid[k].eq(valid),
                         self.item[k].kind.eq(kind), self.item[k].frame.eq(frame_no),
                         self.item[k].slot.eq(slot), self.item[k].mask.eq(mask),
                         self.item[k].phase.eq(phase)]

        en = self.enable
        item(0, ((wrap_first | has_o) | ~en) & (ev_a_mask != 0), ItemKind.DETECTION, frame,
             slot0, ev_a_mask, ev_a_phase)
        item(1, en & wrap_first & synced & ~b_in_frame, ItemKind.SYNC_LOST, frame)
        item(2, en & wrap_first & has_o & (mask_b != 0), ItemKind.DETECTION, frame,
             slot0 + 1, mask_b, phase_b)
        item(3, en & has_o & ~Mux(wrap_first, b_in_frame, synced), ItemKind.SYNC_ACQUIRED,
             frame + 1)
        m.d.sync += [self.origin.eq(en & has_o), self.synced.eq(synced)]

        # -- next state
        m.d.comb += now_nx.eq(now + n)
        with m.If(~en):
            m.d.comb += [synced_nx.eq(0), pend_valid_nx.eq(0)]
            m.d.sync += open_mask.eq(0)
        with m.Elif(has_o):
            m.d.comb += [synced_nx.eq(1), slot0_nx.eq(0), phase0_nx.eq(n - jp)]
            m.d.sync += [frame.eq(frame + 1), open_mask.eq(mask_c), open_phase.eq(phase_c)]
        with m.Elif(wrap_first):
            m.d.comb += [slot0_nx.eq(slot0 + 1), phase0_nx.eq(n - w), synced_nx.eq(b_in_frame)]
            m.d.sync += [open_mask.eq(mask_b), open_phase.eq(phase_b)]
        with m.Else():
            m.d.comb += phase0_nx.eq(phase0 + n)
            m.d.sync += [open_mask.eq(ev_a_mask), open_phase.eq(ev_a_phase)]
        with m.If(self.clear):
            m.d.sync += frame.eq(frame.init)

        # -- the sync stage (one clock ahead): a new pending origin
        with m.If(en & self.sync_edge & (~pend_valid | has_o)):
            m.d.comb += [pend_valid_nx.eq(1),
                         pend_time_nx.eq(now + n + self.sync_index + self.sync_delay)]
        with m.Elif(has_o):
            m.d.comb += pend_valid_nx.eq(0)
        return m
