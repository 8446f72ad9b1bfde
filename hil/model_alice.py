"""Alice's board model: the modulator block (``AliceBlock``) with its CHOICES and REPORTS
channels, as the gateware plays slots (``gateware.spec.modulator``). Part of ``hil.model``."""

import time

from gateware.spec.protocol import StreamChannel
from gateware.spec.registers import REGISTER_MAP, Role
from gateware.spec.modulator import (
    MIN_SLOT_PERIOD, REPORT_BYTES, Intensity, ReportKind, ReportLayout, choice_fires, choice_state,
    lfsr_choices, lfsr_step,
)

from .model_core import CLK_HZ, BlockModel, QueuedChannel, StreamChannelModel

__all__ = ["ChoicesChannel", "ReportsChannel", "AliceBlock"]

class ChoicesChannel(StreamChannelModel):
    """CHOICES: Alice's per-slot choices, host to device, into the modulator's FIFO."""

    channel = StreamChannel.CHOICES.value

    def __init__(self, alice):
        self.alice = alice

    def enabled(self):
        return True

    def free(self):
        self.alice.catch_up()
        return self.alice.depth - len(self.alice.fifo)

    def put(self, data):
        self.alice.catch_up()
        self.alice.fifo += data


class ReportsChannel(QueuedChannel):
    """REPORTS: Alice's START/UNDERFLOW/STOP records, device to host."""

    channel = StreamChannel.REPORTS.value

    def __init__(self, alice):
        super().__init__()
        self.alice = alice

    def pull(self, limit):
        self.alice.catch_up()
        return super().pull(limit)


class AliceBlock(BlockModel):
    """``modulator``: Alice's slot clock, choice FIFO, LFSR pattern, counters and reports.

    Plays the slots the gateware would (``gateware.spec.modulator``): with ``clock`` (a callable
    returning seconds, default ``time.monotonic``) a run plays one slot every
    ``slot_period / clk_hz`` seconds of model time, caught up whenever the host touches the
    board; with ``clock=None`` slots are played only by ``advance(n)`` (for scoreboards). With
    ``trace`` a list, every slot played appends ``(state, intensity, laser, sync)`` to it, the
    pins' values in that slot. The report queue is unbounded, so ``reports_lost`` stays 0.
    """

    name = "modulator"

    def __init__(self, board, *, choices_depth=4096, clk_hz=CLK_HZ, clock=time.monotonic,
                 trace=None):
        super().__init__(board)
        self.depth = choices_depth
        self.clk_hz = clk_hz
        self.clock = clock
        self.trace = trace
        self.fifo = bytearray()
        self.choices = ChoicesChannel(self)
        self.reports = ReportsChannel(self)
        self.bank.on_write["modulator.control"] = self._control
        self.bank.on_write["modulator.command"] = self._command
        self.bank.on_read["modulator.status"] = self._status
        for path in ("modulator.slot_lo", "modulator.underflow_slots"):
            self.bank.on_read[path] = self._caught_up(path)
        self.reset()

    def reset(self):
        self.fifo.clear()
        self.reports.reset()
        self.half = 0             # nibbles of the FIFO's head byte already played
        self.slot_no = 0          # number of the next slot
        self.running = False
        self.lfsr_mode = False
        self.lfsr = 1
        self.run_first = 0
        self.frame_idx = 0
        self.uf_first = None      # first slot of the underflow in progress
        self.uf_count = 0
        self.t0 = 0.0             # model time of the run's first slot
        self.bank.set("modulator.choices_depth", self.depth)
        platform = REGISTER_MAP["core.platform"].layout.const(
            {"role": Role.ALICE, "channels": 3, "dirty": 0}).as_value().value
        self.bank.set("core.platform", platform)

    def channels(self):
        return [self.choices, self.reports]

    # -- register hooks ---------------------------------------------------------------------------

    def _caught_up(self, path):
        def read(index):
            self.catch_up()
            return self.bank.get(path, index)
        return read

    def _status(self, index):
        self.catch_up()
        layout = REGISTER_MAP["modulator.status"].layout
        return layout.const({"running": int(self.running), "lfsr": int(self.lfsr_mode),
                             "underflow": int(self.uf_first is not None),
                             "choices_free": self.depth - len(self.fifo)}).as_value().value

    def _control(self, value, index):
        self.catch_up()
        fields = REGISTER_MAP["modulator.control"].layout.from_bits(value)
        if fields.run and not self.running:
            self._start(bool(fields.lfsr))
        elif not fields.run and self.running:
            self._stop()

    def _command(self, value, index):
        self.catch_up()
        fields = REGISTER_MAP["modulator.command"].layout.from_bits(value)
        if fields.clear_counters:
            self.bank.set("modulator.underflow_slots", 0)
            self.bank.set("modulator.reports_lost", 0)
        if fields.flush and not self.running:
            self.fifo.clear()
            self.half = 0
        if fields.snapshot:
            self.bank.set("modulator.slot_lo", self.slot_no & 0xFFFF_FFFF)
            self.bank.set("modulator.slot_hi", self.slot_no >> 32)

    # -- slots ------------------------------------------------------------------------------------

    @property
    def period(self):
        """Return the slot length in clock cycles, as played."""
        return max(self.bank.get("modulator.slot_period"), MIN_SLOT_PERIOD)

    def _report(self, kind, first, count):
        value = ReportLayout.const({"kind": kind, "lfsr": int(self.lfsr_mode), "first_slot": first,
                                    "count": count}).as_value().value
        self.reports.queue += value.to_bytes(REPORT_BYTES, "little")

    def _start(self, lfsr):
        self.running = True
        self.lfsr_mode = lfsr
        self.lfsr = self.bank.get("modulator.lfsr_seed") or 1
        self.run_first = self.slot_no
        self.frame_idx = 0
        self.t0 = self.clock() if self.clock else 0.0
        self._report(ReportKind.START, self.run_first, 0)
        self._play(1)

    def _stop(self):
        self._end_underflow()
        self.running = False
        self._report(ReportKind.STOP, self.run_first, self.slot_no - self.run_first)

    def _end_underflow(self):
        if self.uf_first is not None:
            self._report(ReportKind.UNDERFLOW, self.uf_first, self.uf_count)
            self.uf_first = None

    def catch_up(self):
        """Play the slots whose start time has passed on ``clock``."""
        if self.running and self.clock is not None:
            due = int((self.clock() - self.t0) * self.clk_hz / self.period) + 1
            self._play(due - (self.slot_no - self.run_first))

    def advance(self, slots):
        """Play ``slots`` more slots of the running run (a stopped board plays none)."""
        if self.running:
            self._play(slots)

    def _play(self, n):
        if n <= 0:
            return
        if self.slot_listeners:
            self._tell_slot_listeners(n)
        if self.trace is not None or self.lfsr_mode:
            for _ in range(n):
                self._play_one()
            return
        # Fast path: n slots, the first ``have`` of them with a choice, the rest underflow.
        have = min(n, 2 * len(self.fifo) - self.half)
        if have:
            self._end_underflow()
            used = self.half + have
            del self.fifo[:used // 2]
            self.half = used % 2
        self._underflow(self.slot_no + have, n - have)
        self.frame_idx = (self.frame_idx + n) % max(self.bank.get("modulator.frame_slots"), 1)
        self.slot_no += n

    def _underflow(self, first, count):
        if count <= 0:
            return
        if self.uf_first is None:
            self.uf_first, self.uf_count = first, 0
        self.uf_count += count
        self.bank.set("modulator.underflow_slots",
                      self.bank.get("modulator.underflow_slots") + count)

    def _play_one(self):
        if self.lfsr_mode:
            nibble = self.lfsr & 0xF
            for _ in range(4):
                self.lfsr = lfsr_step(self.lfsr)
        elif self.fifo:
            nibble = (self.fifo[0] >> (4 * self.half)) & 0xF
            self.half ^= 1
            if not self.half:
                del self.fifo[0]
            self._end_underflow()
        else:
            nibble = None
            self._underflow(self.slot_no, 1)
        frame_slots = self.bank.get("modulator.frame_slots")
        sync = int(self.frame_idx == 0)
        self.frame_idx = 0 if self.frame_idx + 1 >= frame_slots else self.frame_idx + 1
        self.slot_no += 1
        if self.trace is not None:
            if nibble is None:
                self.trace.append((0, Intensity.VACUUM.value, 0, sync))
            else:
                intensity = nibble >> 2
                if intensity == Intensity.RESERVED.value:
                    intensity = Intensity.VACUUM.value
                self.trace.append((choice_state(nibble), intensity, int(choice_fires(nibble)), sync))


    # -- played-slot listeners (issue 5: hil.fibre drives the optics model from them) -------------

    #: Callables ``f(first_slot, nibbles, underflow, frame_idx, frame_slots)``, told of every batch
    #: of slots just before it is played: ``nibbles`` (uint8 array) are the choices of the first
    #: ``len(nibbles)`` slots from ``first_slot``, then ``underflow`` slots go out as vacuum with
    #: the laser off; ``frame_idx`` is the first slot's index in its frame of ``frame_slots``.
    #: Called under the board's lock: a listener only queues the batch.
    slot_listeners = ()

    def _tell_slot_listeners(self, n):
        import numpy as np
        if self.lfsr_mode:
            nibbles = np.array(lfsr_choices(self.lfsr, n), dtype=np.uint8)
        else:
            have = min(n, 2 * len(self.fifo) - self.half)
            raw = np.frombuffer(bytes(self.fifo[:(self.half + have + 1) // 2]), dtype=np.uint8)
            nibbles = np.stack([raw & 0xF, raw >> 4], axis=1).reshape(-1)[self.half:self.half + have]
        frame_slots = max(self.bank.get("modulator.frame_slots"), 1)
        for listener in self.slot_listeners:
            listener(self.slot_no, nibbles, n - len(nibbles), self.frame_idx, frame_slots)
