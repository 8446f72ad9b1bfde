"""Alice's modulator core: slot clock, choice FIFO, LFSR test pattern, outputs and reports.

What it plays, when, and what it reports is specified in ``gateware.spec.modulator`` (its module
docstring); the behavioural model in ``hil.model`` (``AliceBlock``) plays the same, slot by slot.
Register ports are named after the ``modulator`` block's registers, so ``NodeCore`` wires them
by name from the spec.
"""

from amaranth import *
from amaranth.lib import wiring, stream, fifo, data
from amaranth.lib.wiring import In, Out

from ..spec.modulator import (
    MODULATOR_BLOCK, ChoiceLayout, Intensity, ReportKind, ReportLayout, REPORT_BYTES,
    MIN_SLOT_PERIOD, LFSR_WIDTH, LFSR_TAPS, SLOT_COUNTER_WIDTH,
)
from ..spec.registers_base import Access

__all__ = ["Modulator", "AlicePins", "register_ports"]

#: Alice's outputs to the source (the core's view): modulator state (``Bb84State``) and
#: intensity setting, held for each slot; laser trigger and frame sync pulses.
AlicePins = wiring.Signature({
    "state": Out(2),
    "intensity": Out(Intensity),
    "laser": Out(1),
    "sync": Out(1),
})


def register_ports():
    """Return ``{name: In/Out member}`` for the modulator block's registers (core's view)."""
    members = {}
    for reg in MODULATOR_BLOCK.registers:
        members[reg.name] = (Out if reg.access is Access.RO else In)(reg.shape)
    return members


def _lfsr_advance(state, steps):
    """Return the Value of LFSR ``state`` after ``steps`` shifts (as ``spec.lfsr_step``)."""
    for _ in range(steps):
        feedback = state[LFSR_TAPS[0] - 1]
        for tap in LFSR_TAPS[1:]:
            feedback = feedback ^ state[tap - 1]
        state = Cat(feedback, state[:LFSR_WIDTH - 1])
    return state


class Modulator(wiring.Component):
    """Play one choice per slot from ``i_choices`` (bytes, two slots each) to the outputs.

    * ``i_choices``: the CHOICES stream; buffered in a FIFO of ``choices_depth`` bytes (the
      parameter, also read back in register ``choices_depth``), its room in ``choices_free``.
    * ``o_reports``: REPORTS record bytes from a ``reports_depth``-byte FIFO, fill in ``reports_level``.
    * ``pins`` (``AlicePins``): ``state`` (``Bb84State``) and ``intensity`` held for each slot;
      ``laser`` and ``sync`` pulses per slot and per frame (see the spec).
    * ``slot_start``: one-cycle strobe at the first cycle of each slot played (for testbenches).
    """

    def __init__(self, *, choices_depth=4096, reports_depth=256):
        if not 2 <= choices_depth < 1 << 16:
            raise ValueError(f"choices_depth {choices_depth}: the FIFO room is reported in 16 bits")
        self.fifo_depth = choices_depth
        self.reports_depth = reports_depth
        members = {
            "i_choices": In(stream.Signature(8)),
            "choices_free": Out(16),
            "o_reports": Out(stream.Signature(8)),
            "reports_level": Out(16),
            "pins": Out(AlicePins),
            "slot_start": Out(1),
        }
        members.update(register_ports())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        control, status = self.control, self.status
        # Commands are registered: their strobes come combinationally from the link's register
        # bus, which would otherwise run on through the FIFO's reset (one cycle late is harmless).
        command = Signal.like(self.command)
        m.d.sync += command.eq(self.command)

        # ------------------------------------------------------------ choice FIFO and prefetch
        running = Signal()
        flush = Signal()
        m.d.comb += flush.eq(command.flush & ~running)
        m.submodules.choices = choices = ResetInserter(flush)(
            fifo.SyncFIFOBuffered(width=8, depth=self.fifo_depth))
        m.d.comb += [
            choices.w_data.eq(self.i_choices.payload),
            choices.w_en.eq(self.i_choices.valid),
            self.i_choices.ready.eq(choices.w_rdy),
            self.choices_free.eq(self.fifo_depth - choices.level),
            status.choices_free.eq(self.choices_free),
            self.choices_depth.eq(self.fifo_depth),
        ]
        # The next slot's choice waits in ``nxt``; ``half`` says which nibble of the FIFO's head
        # byte comes next.
        nxt = Signal(ChoiceLayout)
        nxt_valid = Signal()
        half = Signal()
        take = Signal()   # the slot starting now consumes ``nxt``
        with m.If(flush):
            m.d.sync += [nxt_valid.eq(0), half.eq(0)]
        with m.Elif(take):
            m.d.sync += nxt_valid.eq(0)
        with m.Elif(~nxt_valid & choices.r_rdy):
            m.d.sync += [nxt.eq(Mux(half, choices.r_data[4:], choices.r_data[:4])),
                         nxt_valid.eq(1), half.eq(~half)]
            m.d.comb += choices.r_en.eq(half)

        # ------------------------------------------------------------ slot clock
        # The slot's last cycle is phase == period - 1. ``period_m1`` is registered from the
        # register (a write takes effect one cycle later), so the slot clock's decision is one
        # compare deep.
        period_m1 = Signal(16)
        m.d.sync += period_m1.eq(Mux(self.slot_period < MIN_SLOT_PERIOD, MIN_SLOT_PERIOD,
                                     self.slot_period) - 1)
        phase = Signal(16)
        frame_idx = Signal(24)
        slot_no = Signal(SLOT_COUNTER_WIDTH)      # number of the next slot to play
        run_first = Signal(SLOT_COUNTER_WIDTH)
        lfsr_mode = Signal()
        lfsr = Signal(LFSR_WIDTH)

        # Report requests: at most one of each kind waits; order START < UNDERFLOW < STOP holds
        # because a new run waits until the previous STOP has been queued.
        pend_start = Signal()
        pend_uf = Signal()
        pend_stop = Signal()
        uf_first = Signal(SLOT_COUNTER_WIDTH)
        uf_count = Signal(32)
        in_uf = Signal()
        rep_uf_first = Signal(SLOT_COUNTER_WIDTH)
        rep_uf_count = Signal(32)
        stop_count = Signal(32)
        lost = Signal()

        begin = Signal()
        end = Signal()
        last = Signal()
        m.d.comb += [
            last.eq(phase >= period_m1),
            begin.eq(Mux(running, last, ~pend_start & ~pend_stop) & control.run),
            end.eq(running & last & ~control.run),
            self.slot_start.eq(begin),
        ]
        with m.If(running & ~last):
            m.d.sync += phase.eq(phase + 1)

        # The choice of a starting slot.
        cur = Signal(ChoiceLayout)
        underflow = Signal()
        use_lfsr = Signal()
        seed = Signal(LFSR_WIDTH)
        m.d.comb += [
            use_lfsr.eq(Mux(running, lfsr_mode, control.lfsr)),
            seed.eq(Mux(self.lfsr_seed == 0, 1, self.lfsr_seed)),
        ]
        with m.If(use_lfsr):
            m.d.comb += cur.eq(Mux(running, lfsr, seed)[:4])
        with m.Elif(nxt_valid):
            m.d.comb += cur.eq(nxt)
        with m.Else():
            m.d.comb += [underflow.eq(1), cur.intensity.eq(Intensity.VACUUM)]

        fires = Signal()
        m.d.comb += fires.eq((cur.intensity == Intensity.SIGNAL) | (cur.intensity == Intensity.DECOY))
        slot_state = Signal(2)
        slot_intensity = Signal(Intensity, init=Intensity.VACUUM)
        slot_fires = Signal()
        slot_sync = Signal()

        with m.If(begin):
            m.d.comb += take.eq(~use_lfsr & nxt_valid)
            m.d.sync += [
                phase.eq(0),
                slot_no.eq(slot_no + 1),
                slot_state.eq(Mux(underflow, 0, cur.as_value()[:2])),
                slot_intensity.eq(Mux(cur.intensity == Intensity.RESERVED, Intensity.VACUUM,
                                      cur.intensity)),
                slot_fires.eq(fires & ~underflow),
                lfsr.eq(_lfsr_advance(Mux(running, lfsr, seed), 4)),
            ]
            with m.If(~running | (frame_idx + 1 >= self.frame_slots)):
                m.d.sync += [frame_idx.eq(0), slot_sync.eq(1)]
            with m.Else():
                m.d.sync += [frame_idx.eq(frame_idx + 1), slot_sync.eq(0)]
            with m.If(~running):
                m.d.sync += [running.eq(1), run_first.eq(slot_no), lfsr_mode.eq(control.lfsr),
                             pend_start.eq(1)]
            with m.If(underflow):
                with m.If(in_uf):
                    m.d.sync += uf_count.eq(uf_count + 1)
                with m.Else():
                    m.d.sync += [in_uf.eq(1), uf_first.eq(slot_no), uf_count.eq(1)]

        # An underflow run ends at the first slot with a choice, or when the run ends.
        uf_done = Signal()
        m.d.comb += uf_done.eq(in_uf & ((begin & ~underflow) | end))
        with m.If(uf_done):
            m.d.sync += in_uf.eq(0)
            with m.If(pend_uf):
                m.d.comb += lost.eq(1)
            with m.Else():
                m.d.sync += [pend_uf.eq(1), rep_uf_first.eq(uf_first), rep_uf_count.eq(uf_count)]
        with m.If(end):
            m.d.sync += [running.eq(0), slot_intensity.eq(Intensity.VACUUM), slot_fires.eq(0),
                         slot_sync.eq(0), slot_state.eq(0), pend_stop.eq(1),
                         stop_count.eq(slot_no - run_first)]

        # Outputs: the slot's settings, and pulses in the window [delay, delay + width).
        width = Signal(16)
        m.d.comb += width.eq(Mux(self.trigger_width == 0, 1, self.trigger_width))
        window = Signal()
        m.d.comb += window.eq(running & (phase >= self.trigger_delay) &
                              (phase - self.trigger_delay < width))
        m.d.comb += [
            self.pins.state.eq(slot_state),
            self.pins.intensity.eq(slot_intensity),
            self.pins.laser.eq(window & slot_fires),
            self.pins.sync.eq(window & slot_sync),
        ]

        # ------------------------------------------------------------ counters and status
        underflow_slots = self.underflow_slots
        reports_lost = self.reports_lost
        with m.If(command.clear_counters):
            m.d.sync += [underflow_slots.eq(0), reports_lost.eq(0)]
        with m.Else():
            with m.If(begin & underflow):
                m.d.sync += underflow_slots.eq(underflow_slots + 1)
            with m.If(lost):
                m.d.sync += reports_lost.eq(reports_lost + 1)
        with m.If(command.snapshot):
            m.d.sync += [self.slot_lo.eq(slot_no[:32]), self.slot_hi.eq(slot_no[32:])]
        m.d.comb += [
            status.running.eq(running),
            status.lfsr.eq(lfsr_mode),
            status.underflow.eq(in_uf),
        ]

        # ------------------------------------------------------------ report serialiser
        m.submodules.reports = reports = fifo.SyncFIFOBuffered(width=8, depth=self.reports_depth)
        wiring.connect(m, reports.r_stream, wiring.flipped(self.o_reports))
        m.d.comb += self.reports_level.eq(reports.level)
        record = Signal(ReportLayout.size)
        left = Signal(range(REPORT_BYTES + 1))

        def queue(kind, first, count):
            rec = ReportLayout.const({"kind": kind}).as_value()
            value = Cat(rec[:8], lfsr_mode, Const(0, 7), first, count)
            return [record.eq(value), left.eq(REPORT_BYTES)]

        m.d.comb += [reports.w_data.eq(record[:8]), reports.w_en.eq(left != 0)]
        with m.If(left != 0):
            with m.If(reports.w_rdy):
                m.d.sync += [record.eq(record >> 8), left.eq(left - 1)]
        with m.Elif(pend_start):
            m.d.sync += [pend_start.eq(0), *queue(ReportKind.START, run_first, 0)]
        with m.Elif(pend_uf):
            m.d.sync += [pend_uf.eq(0), *queue(ReportKind.UNDERFLOW, rep_uf_first, rep_uf_count)]
        with m.Elif(pend_stop):
            m.d.sync += [pend_stop.eq(0), *queue(ReportKind.STOP, run_first, stop_count)]
        return m
