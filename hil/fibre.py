"""The simulated quantum channel: Alice's played slots -> optics model -> Bob's detector pins.

``Fibre`` listens to the slots Alice's behavioural board plays (``AliceBlock.slot_listeners``:
choices, and underflowed slots as vacuum with the laser off), sends them through
``hil.optics.OpticsModel`` and hands Bob's board the click times per detector channel and the
sync edges, in Bob's bins: to ``BobBlock.inject`` (the behavioural model) or to the RTL twin's
detector pins (``hil.twin.TwinClicks``).

One notion of time, ``TimeBase``, ties the two boards' registers together: Alice's slot is
``slot_cycles`` clock cycles (``modulator.slot_period``); Bob's bin is one clock period divided by
``samples`` (``tagger.info.samples``), so his ``tagger.slot_period`` is ``slot_cycles * samples``
bins and both use ``frame_slots`` slots per frame. Time at Bob counts bins from Alice's slot 0:
slot ``s`` leaves Alice at ``s * slot_bins``; its photons reach Bob the fibre delay later
(``OpticsModel``); the sync edge of a frame starting at slot ``f`` arrives ``sync_lead_ps`` ahead
of that slot's photons, so with ``tagger.sync_delay`` 0 photons land at phase
``TimeBase.photon_phase_bins`` of their slot.

Bob gets the light in *stretches* of whole frames (``deliver``): a frame is handed over once the
next frame has started at Alice (or at ``flush``). Each stretch is one tagger run: sync is acquired
at its first frame and lost after its last, on the model (``BobBlock.inject``) and on the twin
alike (the twin leaves a gap of more than a frame between stretches), so the two boards see the
same stimulus and must send the same records.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

import numpy as np

from gateware.spec.modulator import ChoiceLayout, Intensity, MIN_SLOT_PERIOD
from gateware.spec.tagger import CHANNELS, PHASE_BITS, SLOT_BITS

__all__ = ["TimeBase", "Fibre", "Stretch", "ModelBob", "min_spaced"]

_BIT = ChoiceLayout["bit"].offset
_BASIS = ChoiceLayout["basis"].offset
_INTENSITY = ChoiceLayout["intensity"].offset


@dataclass(frozen=True)
class TimeBase:
    """Slot, frame and bin of both boards.

    clk_hz: both boards' clock (Hz). slot_cycles: Alice's slot in clock cycles
    (``modulator.slot_period``). frame_slots: slots per frame (``modulator.frame_slots`` and
    ``tagger.frame_slots``). samples: Bob's samples per clock per input. sync_lead_ps: how long
    the sync edge arrives before the photons of its frame's first slot (ps).
    """

    clk_hz: int = 48_000_000
    slot_cycles: int = 48
    frame_slots: int = 1024
    samples: int = 2
    sync_lead_ps: float | None = None

    def __post_init__(self):
        if self.slot_cycles < MIN_SLOT_PERIOD:
            raise ValueError(f"slot_cycles {self.slot_cycles}: Alice's slot is at least "
                             f"{MIN_SLOT_PERIOD} clock cycles")
        if not self.slot_bins < 1 << PHASE_BITS:
            raise ValueError(f"slot of {self.slot_bins} bins: Bob's tagger takes at most "
                             f"{(1 << PHASE_BITS) - 1}; shorten slot_cycles")
        if not 1 <= self.frame_slots < 1 << SLOT_BITS:
            raise ValueError(f"frame_slots {self.frame_slots}: Bob's tagger takes 1 to "
                             f"{(1 << SLOT_BITS) - 1}")

    @property
    def bin_ps(self) -> float:
        """Return Bob's bin width in ps."""
        return 1e12 / (self.clk_hz * self.samples)

    @property
    def slot_bins(self) -> int:
        """Return the slot length in Bob's bins (``tagger.slot_period``)."""
        return self.slot_cycles * self.samples

    @property
    def slot_ps(self) -> float:
        """Return the slot length in ps."""
        return self.slot_cycles * 1e12 / self.clk_hz

    @property
    def frame_bins(self) -> int:
        """Return the frame length in Bob's bins."""
        return self.frame_slots * self.slot_bins

    @property
    def slot_hz(self) -> float:
        """Return the slot rate in slots per second."""
        return self.clk_hz / self.slot_cycles

    @property
    def lead_ps(self) -> float:
        """Return the sync lead in ps (default: 3/8 of a slot)."""
        return 0.375 * self.slot_ps if self.sync_lead_ps is None else float(self.sync_lead_ps)

    @property
    def photon_phase_bins(self) -> int:
        """Return the phase (bins) at which photons land in their slot with ``sync_delay`` 0."""
        return int(np.floor(self.lead_ps / self.bin_ps)) % self.slot_bins

    def alice_settings(self) -> dict:
        """Return Alice's modulator settings (``AliceFeeder(slot_period=..., frame_slots=...)``)."""
        return {"slot_period": self.slot_cycles, "frame_slots": self.frame_slots}

    def bob_settings(self, **overrides) -> dict:
        """Return Bob's tagger settings (``Tagger.configure(**...)``) for this time base, the gate
        open over the whole slot; ``overrides`` replace any of them."""
        settings = {"slot_period": self.slot_bins, "frame_slots": self.frame_slots,
                    "sync_delay": 0, "gate_start": 0, "gate_width": self.slot_bins,
                    "hist_shift": max(0, int(np.ceil(np.log2(self.slot_bins / 32)))),
                    "dead_time": 0,
                    "channel_map": [(0, 0), (0, 1), (1, 0), (1, 1)]}
        settings.update(overrides)
        return settings

    def as_dict(self) -> dict:
        """Return the figures an operator needs, as plain data."""
        return {"clk_hz": self.clk_hz, "slot_cycles": self.slot_cycles,
                "frame_slots": self.frame_slots, "samples": self.samples,
                "bin_ps": self.bin_ps, "slot_bins": self.slot_bins, "slot_ps": self.slot_ps,
                "slot_hz": self.slot_hz, "photon_phase_bins": self.photon_phase_bins}


@dataclass
class Stretch:
    """Light for Bob: click times per channel and sync edge times, in Bob's bins, and the fibre
    slots ``[first_slot, end_slot)`` they came from (Alice's slot numbers, plus
    ``Fibre.slot_offset`` once her board has been reset)."""

    clicks: list
    syncs: np.ndarray
    first_slot: int
    end_slot: int

    @property
    def n_clicks(self) -> int:
        """Return the number of clicks over all channels."""
        return int(sum(c.size for c in self.clicks))


def min_spaced(times, gap=2):
    """Return sorted ``times`` with every time closer than ``gap`` bins to the previous kept one
    removed: a detector pulse is a bin long and needs a low bin before its next rising edge."""
    times = np.sort(np.asarray(times, dtype=np.int64))
    if times.size < 2 or np.all(np.diff(times) >= gap):
        return times
    keep = np.ones(times.size, dtype=bool)
    last = times[0]
    for i in range(1, times.size):      # only reached with near-coincident clicks (rare)
        if times[i] - last < gap:
            keep[i] = False
        else:
            last = times[i]
    return times[keep]


class ModelBob:
    """Deliver stretches to a behavioural board's tagger (``ModelBoard(role=BOB).bob``)."""

    def __init__(self, bob_block):
        self.bob = bob_block
        self.results = []

    def deliver(self, stretch: Stretch):
        """Inject one stretch; keep the TaggerResult (None while the tagger is disabled)."""
        self.results.append(self.bob.inject(stretch.clicks, stretch.syncs))

    def close(self):
        """Nothing to close."""


class Fibre:
    """Alice's slots through the optics model to Bob, one stretch of whole frames at a time.

    ``optics``: a ``hil.optics.LinkConfig`` (its timing is replaced from ``timebase``).
    ``bob``: where stretches go (``ModelBob``, ``hil.twin.TwinClicks``, or any object with
    ``deliver(stretch)``); None keeps them in ``stretches``. ``attenuator``/``detector``/``attack``
    go to the OpticsModel (``hil.scpi`` objects: a VOA setting changes the loss at once).
    ``seed`` seeds the optics model; the same seed and the same batches give the same clicks.
    Attach to Alice's board with ``attach(alice_block)``; ``pump()`` moves what Alice played to
    Bob; ``flush()`` also hands over the frame in progress.
    """

    def __init__(self, optics, timebase: TimeBase, *, seed: int, bob=None, attenuator=None,
                 detector=None, attack=None, chunk_slots=1 << 20):
        from dataclasses import replace
        from hil.optics import OpticsModel, Timing
        self.timebase = tb = timebase
        # Timing from the time base; the model's own sync times are not used (frames start
        # where Alice's do, see _syncs), so its frame is made too long to matter.
        timing = replace(optics.timing, slot_period_ps=tb.slot_ps, slots_per_frame=1 << 62,
                         sync_offset_ps=0.0)
        self.config = replace(optics, timing=timing)
        self.seed = seed
        self.model = OpticsModel(self.config, seed=seed, attenuator=attenuator, detector=detector,
                                 attack=attack, chunk_slots=chunk_slots)
        self.bob = bob
        self.stretches = []
        self._queue = deque()
        self._lock = threading.Lock()
        delay_ps = self.config.fibre.delay_ps()
        #: Bins added to every time so that none is negative (a sync leads its photons).
        self.origin_bins = int(np.ceil(tb.lead_ps / tb.bin_ps)) + tb.slot_bins
        self.sync_offset_bins = int(np.floor((delay_ps - tb.lead_ps) / tb.bin_ps)) + self.origin_bins
        #: Phase (bins) of a jitter-free photon click in its slot, with ``tagger.sync_delay`` 0.
        self.photon_phase_bins = int(
            (np.floor(delay_ps / tb.bin_ps) + self.origin_bins - self.sync_offset_bins)
            % tb.slot_bins)
        # pending light, not yet handed to Bob
        self._clicks = []            # Clicks chunks
        self._syncs = []             # (frame first slot) arrays
        self._played = 0             # next Alice slot the optics model expects
        self._delivered = 0          # fibre slots handed to Bob
        self._offset = 0             # fibre slot - Alice's slot number (grows at a board reset)
        self.error = None            # what stopped the fibre (a slot period it cannot follow)
        self._period_warned = False
        self._pin_run = None         # the run of an Alice twin: last sync, slot and cycle seen
        self.stats = {"slots": 0, "underflow_slots": 0, "clicks": 0, "syncs": 0, "stretches": 0,
                      "merged_clicks": 0, "resets": 0}

    # -- Alice side ---------------------------------------------------------------------------

    def attach(self, alice_block):
        """Listen to the slots ``alice_block`` (an ``AliceBlock``) plays; return self."""
        alice_block.slot_listeners = list(alice_block.slot_listeners) + [self._on_slots]
        self.alice = alice_block
        return self

    def _on_slots(self, first_slot, nibbles, underflow, frame_idx, frame_slots):
        # Called under Alice's board lock: just queue the batch.
        period = self.alice.period
        if period != self.timebase.slot_cycles:
            self._period_error(period)
        n = len(nibbles) + int(underflow)
        starts = np.arange((-int(frame_idx)) % frame_slots, n, frame_slots, dtype=np.int64)
        self._queue.append((first_slot, np.array(nibbles, dtype=np.uint8), int(underflow),
                            starts, int(frame_slots)))

    def _period_error(self, period):
        if not self._period_warned:
            self._period_warned = True
            self.error = (f"Alice plays slots of {period:g} clock cycles but the fibre's time "
                          f"base has {self.timebase.slot_cycles}: configure her from the time "
                          f"base (Testbed.timebase.alice_settings())")

    def attach_twin(self, twin_slots):
        """Listen to the slots an Alice RTL twin's pins play (``hil.twin.TwinSlots``); return
        self."""
        from hil.twin import unpack_records

        def on_word(first_slot, records, first_cycle, ended):
            self.play_pins(first_slot, *unpack_records(records), first_cycle=first_cycle,
                           ended=ended)
        twin_slots.listeners.append(on_word)
        self.alice_twin = twin_slots
        return self

    def play_pins(self, first_slot, state, intensity, laser, sync, *, first_cycle=None,
                  ended=False):
        """Send slots from ``first_slot`` as Alice's pins played them (arrays per slot: the
        modulator ``state`` (``Bb84State``: basis * 2 + bit) and ``intensity`` pins, 1 where
        a laser or sync pulse came out): a slot without a laser pulse is vacuum whatever its
        settings, a frame starts at every sync pulse. ``first_cycle``: the clock cycle the
        first slot started, to check the slot period against the time base; ``ended``: the run
        stopped after these slots. The same notion of time as the model Alice's batches."""
        tb = self.timebase
        state = np.asarray(state, np.uint8)
        n = state.size
        fired = np.asarray(laser, bool)
        cls = np.where(fired, np.asarray(intensity, np.uint8), np.uint8(Intensity.VACUUM.value))
        nib = ((state & 1) << _BIT) | (((state >> 1) & 1) << _BASIS) | ((cls & 3) << _INTENSITY)
        starts = np.flatnonzero(np.asarray(sync, bool)).astype(np.int64)
        run = self._pin_run or {"sync": None, "next": None, "first": None, "cycle": None}
        if first_slot == run["next"] and first_cycle is not None and run["cycle"] is not None:
            period = (first_cycle - run["cycle"]) / (first_slot - run["first"])
            if period != tb.slot_cycles:
                self._period_error(period)
        for s in (first_slot + starts).tolist():
            if run["sync"] is not None and s - run["sync"] != tb.frame_slots and self.error is None:
                self.error = (f"Alice plays frames of {s - run['sync']} slots but the fibre's "
                              f"time base has {tb.frame_slots}: configure both boards from one "
                              f"TimeBase (Testbed.timebase)")
            run["sync"] = s
        run.update(next=first_slot + n, first=first_slot, cycle=first_cycle)
        self._pin_run = None if ended else run
        self._queue.append((first_slot, nib.astype(np.uint8), 0, starts, None))

    def play(self, first_slot, bit, basis, intensity, *, frame_idx=None):
        """Send slots from ``first_slot`` with the given choices (arrays; intensity class per
        ``gateware.spec.modulator.Intensity``) without a board: for tests and scoreboards."""
        n = len(bit)
        fidx = first_slot % self.timebase.frame_slots if frame_idx is None else frame_idx
        nib = ((np.asarray(bit, np.uint8) & 1) << _BIT) | ((np.asarray(basis, np.uint8) & 1) << _BASIS) \
            | ((np.asarray(intensity, np.uint8) & 3) << _INTENSITY)
        fs = self.timebase.frame_slots
        starts = np.arange((-fidx) % fs, n, fs, dtype=np.int64)
        self._queue.append((first_slot, nib.astype(np.uint8), 0, starts, fs))

    def _process(self):
        """Run the optics once over every batch queued since the last call (contiguous slots:
        a host that touches the board often makes many small batches)."""
        tb = self.timebase
        if self.error:
            raise RuntimeError(self.error)
        parts, starts = [], []
        expect = self._played
        while self._queue:
            first, nib, underflow, frame_starts, frame_slots = self._queue.popleft()
            if frame_slots is not None and frame_slots != tb.frame_slots:
                raise RuntimeError(f"Alice plays frames of {frame_slots} slots but the fibre's time "
                                   f"base has {tb.frame_slots}: configure both boards from one "
                                   f"TimeBase (Testbed.timebase)")
            first += self._offset
            if first < expect:      # Alice's board was reset (slot numbers restart): time goes on
                self._offset += expect - first
                self.stats["resets"] += 1
                first = expect
            if first > expect:      # slots Alice never played (not expected of a board): dark
                parts.append(np.zeros(first - expect, np.uint8) | self._VACUUM)
            choices = np.full(nib.size + underflow, self._VACUUM, np.uint8)
            choices[:nib.size] = nib
            parts.append(choices)
            starts.append(first + frame_starts)
            self.stats["underflow_slots"] += underflow
            expect = first + choices.size
        if parts:
            self._run(np.concatenate(parts))
            self._syncs.append(np.concatenate(starts))

    _VACUUM = np.uint8(Intensity.VACUUM.value << _INTENSITY)

    def _run(self, nib):
        n = nib.size
        bit = ((nib >> _BIT) & 1).astype(np.int8)
        basis = ((nib >> _BASIS) & 1).astype(np.int8)
        intensity = ((nib >> _INTENSITY) & 3).astype(np.int8)
        intensity[intensity == Intensity.RESERVED.value] = Intensity.VACUUM.value
        result = self.model.run(bit, basis, intensity)
        self._played += n
        self.stats["slots"] += n
        self._clicks.append(result.clicks)

    # -- Bob side -----------------------------------------------------------------------------

    def pump(self, min_frames=1):
        """Run the optics over what Alice played and hand Bob every whole frame, once there are
        at least ``min_frames`` of them; return the stretch delivered (or None)."""
        with self._lock:
            self._process()
            starts = np.concatenate(self._syncs) if self._syncs else np.empty(0, np.int64)
            if starts.size < max(2, int(min_frames) + 1):
                return None
            return self._deliver(int(starts[-1]))

    def flush(self):
        """Hand Bob everything Alice played, the frame in progress included; return the stretch."""
        with self._lock:
            self._process()
            return self._deliver(self._played)

    def _deliver(self, end_slot):
        from hil.optics import Clicks
        tb = self.timebase
        clicks = Clicks.concatenate(self._clicks) if self._clicks else None
        starts = np.concatenate(self._syncs) if self._syncs else np.empty(0, np.int64)
        if end_slot <= self._delivered and (clicks is None or not len(clicks)):
            return None
        now = starts < end_slot
        syncs, self._syncs = starts[now], [starts[~now]]
        if clicks is not None and len(clicks):
            mine = clicks.slot < end_slot
            out, rest = clicks.select(mine), clicks.select(~mine)
            self._clicks = [rest] if len(rest) else []
        else:
            out = None
        per_channel = []
        for ch in range(CHANNELS):
            if out is None:
                per_channel.append(np.empty(0, np.int64))
                continue
            t = out.time_ps[out.channel == ch]
            # the optics model rounds to whole ps: half a ps keeps a time on a bin edge in its bin
            bins = np.floor((t + 0.5) / tb.bin_ps).astype(np.int64) + self.origin_bins
            spaced = min_spaced(bins)
            self.stats["merged_clicks"] += bins.size - spaced.size
            per_channel.append(spaced)
        sync_bins = syncs * tb.slot_bins + self.sync_offset_bins
        stretch = Stretch(per_channel, sync_bins, self._delivered, end_slot)
        self._delivered = end_slot
        self.stats["clicks"] += stretch.n_clicks
        self.stats["syncs"] += int(sync_bins.size)
        self.stats["stretches"] += 1
        if self.bob is None:
            self.stretches.append(stretch)
        else:
            self.bob.deliver(stretch)
        return stretch

    @property
    def slot_offset(self) -> int:
        """Return fibre slot minus Alice's slot number (0 until her board is reset: then time
        goes on, the fibre's slot count does not restart)."""
        return self._offset

    @property
    def played(self) -> int:
        """Return the Alice slots the optics model has sent so far."""
        return self._played
