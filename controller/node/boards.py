"""The board side of a node: one block = one modulator run (Alice) = one tagger session (Bob).

Alice streams exactly ``block_slots`` choices, lets the board play them, stops the run and takes
the run's record (``controller.alice.SentRecord``): slot numbers relative to the run's first
slot index her record.  A run that went on past ``block_slots`` while the stop crossed the link
is cut to its first ``block_slots`` slots (``AliceBoard.overrun`` counts the rest).  Bob clears his tagger before each run (frame numbers start at 0 with
the run's first sync), collects the EVENTS stream until the tagger reports sync lost after the
run's last frame, and maps each detection to ``frame * frame_slots + slot``, the same relative
slot number.  Board resets and link errors surface as :class:`BoardFault`.
"""

from __future__ import annotations

import time

import numpy as np

from controller.alice import AliceFeeder, ChoiceSampler, SentRecord, open_source
from controller.device import Device
from controller.link.errors import LinkError
from controller.link.transport import DEFAULT_BAUD
from controller.postprocess.sift import AliceRecord, BobDetections, squash_clicks
from controller.tagger import Records, Tagger
from gateware.spec.modulator import SLOTS_PER_BYTE
from gateware.spec.protocol import StreamChannel
from gateware.spec.tagger import MarkerCode


class BoardFault(RuntimeError):
    """The board stopped answering, was reset, or lost data: the block is void."""


class AliceBoard:
    """Alice's board: plays one block of random choices per call to :meth:`run_block`."""

    def __init__(self, url: str, proto, *, slot_period: int = 48, frame_slots: int = 1024,
                 random_source: str = "os", chunk: int = 30_000, poll_s: float = 0.002,
                 link_timeout: float = 0.25, baudrate: int = DEFAULT_BAUD):
        self.url, self.proto, self.link_timeout = url, proto, link_timeout
        self.baudrate = baudrate
        self.slot_period, self.frame_slots = slot_period, frame_slots
        self.random_source, self.chunk, self.poll_s = random_source, chunk, poll_s
        self.overrun = {"slots": 0, "choices": 0}   # of the last run: slots past the block, choices in them
        ps = proto.probabilities
        self.sampler = ChoiceSampler(p_x=proto.p_x, p_signal=ps[0], p_decoy=ps[1],
                                     p_vacuum=ps[2] if len(ps) > 2 else 0.0)
        self.device = self.feeder = None

    def open(self) -> None:
        """Connect to the board and configure the modulator (again, after a fault)."""
        self.close()
        try:
            self.device = Device(self.url, timeout=self.link_timeout, baudrate=self.baudrate)
            self.feeder = AliceFeeder(self.device, self.sampler, open_source(self.random_source),
                                      slot_period=self.slot_period, frame_slots=self.frame_slots,
                                      chunk=self.chunk)
            self.feeder.configure()
        except (LinkError, OSError, TimeoutError) as exc:
            self.close()
            raise BoardFault(f"Alice's board at {self.url}: {exc}") from None

    @property
    def slot_hz(self) -> float:
        return self.feeder.slot_hz

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.close()
            except Exception:  # noqa: BLE001 - closing a dead link
                pass
        self.device = self.feeder = None

    def _pump(self, left: int) -> int:
        """Stream at most ``left`` more choice bytes (and read the reports); return bytes sent."""
        self.feeder.chunk = min(self.chunk, left)
        return self.feeder.pump()

    def run_block(self, n_slots: int, stop_event=None) -> tuple[AliceRecord, int]:
        """Stream ``n_slots`` choices, play them as one run; return the record and its first slot."""
        if self.feeder is None:
            self.open()
        f = self.feeder
        try:
            if f.device.read("modulator.slot_period") != self.slot_period:
                self.close()
                raise BoardFault("Alice's modulator lost its settings: the board was reset")
        except (LinkError, OSError) as exc:
            self.close()
            raise BoardFault(f"Alice's board: {exc}") from None
        # reports of an earlier, interrupted run must not leak into this block's record
        f.record, f._runs = SentRecord(), 0
        try:
            while f.device.link.stream_read(StreamChannel.REPORTS, timeout=0.0):
                pass
        except (LinkError, OSError) as exc:
            self.close()
            raise BoardFault(f"Alice's board: {exc}") from None
        left = n_slots // SLOTS_PER_BYTE
        try:
            left -= self._pump(left)               # prefill, then start the run
            f.device.write("modulator.control", run=1, lfsr=0)
            f._runs = 1
            while True:
                left -= self._pump(left)
                if not left:
                    status = f.device.fields("modulator.status")
                    if not status["running"]:
                        raise BoardFault("Alice's modulator stopped by itself: the board was reset")
                    if status["choices_free"] >= f.depth:
                        break                       # every streamed choice has been played
                if stop_event is not None and stop_event.is_set():
                    raise BoardFault("stopped")
                time.sleep(self.poll_s)
            f.stop()
            if f.device.read("modulator.slot_period") != self.slot_period:
                raise BoardFault("Alice's modulator lost its settings during the run: the board "
                                 "was reset")
        except (LinkError, OSError, TimeoutError) as exc:
            self.close()
            raise BoardFault(f"Alice's board: {exc}") from None
        try:
            rec = f.record.for_distillation()
        except ValueError as exc:
            self.close()
            raise BoardFault(f"Alice's board reports do not match what was streamed: {exc}") from None
        played = int(rec["usable"].sum())
        if len(f.record.runs) != 1 or played > n_slots or not len(rec["slot"]):
            self.close()
            raise BoardFault(f"Alice's board reported {len(f.record.runs)} run(s) and {played} "
                             f"played choices for a block of {n_slots}: reports out of step")
        # a board's run goes on while the stop command crosses the link: the slots past the
        # block's n_slots are underflows (dark), or choices an underflow earlier in the run
        # pushed back; the block is the first n_slots, the rest is link time it cost
        self.overrun = {"slots": max(len(rec["slot"]) - n_slots, 0),
                        "choices": int(rec["usable"][n_slots:].sum())}
        if self.overrun["slots"]:
            rec = {k: v[:n_slots] for k, v in rec.items() if k != "pending"}
        first = int(rec["slot"][0])
        return AliceRecord(bits=rec["bit"], bases=rec["basis"], intensities=rec["intensity"],
                           usable=rec["usable"]), first


class BobBoard:
    """Bob's board: the tagger, cleared before each run, read until the run's sync is lost."""

    def __init__(self, url: str, *, slot_period: int = 48, frame_slots: int = 1024,
                 seed: int | None = None, link_timeout: float = 0.25,
                 baudrate: int = DEFAULT_BAUD):
        self.url, self.slot_period, self.frame_slots = url, slot_period, frame_slots
        self.baudrate = baudrate
        self.link_timeout = link_timeout
        self.device = self.tagger = None
        self.rng = np.random.default_rng(seed)   # squashing double clicks only
        self.cmap = None

    def open(self) -> None:
        self.close()
        try:
            self.device = Device(self.url, timeout=self.link_timeout, baudrate=self.baudrate)
            self.tagger = Tagger(self.device)
            samples = self.tagger.samples
            self.tagger.configure(slot_period=self.slot_period * samples,
                                  frame_slots=self.frame_slots, gate_start=0,
                                  gate_width=self.slot_period * samples, dead_time=0,
                                  channel_map=[(0, 0), (0, 1), (1, 0), (1, 1)])
            self.cmap = np.array(self.tagger.channel_map(), dtype=np.uint8)
        except (LinkError, OSError, TimeoutError) as exc:
            self.close()
            raise BoardFault(f"Bob's board at {self.url}: {exc}") from None

    def close(self) -> None:
        if self.device is not None:
            try:
                self.device.close()
            except Exception:  # noqa: BLE001
                pass
        self.device = self.tagger = None

    def arm(self) -> None:
        """Get ready for the next run: stop, clear, drain, re-enable (reconfigures after a reset)."""
        try:
            if self.tagger is None:
                self.open()
            else:
                self._check_settings()
            t = self.tagger
            t.stop()
            # drain what is left of earlier runs (whole words, through the same decoder), then
            # clear: frame numbers restart at 0 with the next run's first sync
            while len(t.read_records(size=1 << 16, timeout=0.02)) or \
                    t.device.link.stream_pending(StreamChannel.EVENTS):
                pass
            t.clear()
            t.start()
            self._check_settings()                  # a reset in between would run on defaults
        except (LinkError, OSError, TimeoutError) as exc:
            self.close()
            raise BoardFault(f"Bob's board: {exc}") from None

    def _check_settings(self) -> None:
        dev = self.device
        if dev.read("tagger.slot_period") != self.slot_period * self.tagger.samples or \
                dev.read("tagger.frame_slots") != self.frame_slots:
            self.close()
            raise BoardFault("Bob's tagger lost its settings: the board was reset")

    def collect(self, n_slots: int, timeout_s: float, stop_event=None) -> BobDetections:
        """Return the run's detections (relative slot, basis, bit); waits for sync lost at its end
        (``timeout_s`` of silence on the EVENTS stream is a board fault)."""
        frames = -(-n_slots // self.frame_slots)
        parts = []
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                recs = self.tagger.read_records(size=1 << 16, timeout=0.05)
                parts.append(recs)
                if recs.words:
                    deadline = time.monotonic() + timeout_s     # a timeout of silence
                lost = recs.markers[recs.markers[:, 1] == MarkerCode.SYNC_LOST.value] \
                    if recs.markers.size else recs.markers
                if lost.size and int(lost[:, 2].max()) >= frames - 1:
                    break
                if time.monotonic() > deadline or (stop_event is not None and stop_event.is_set()):
                    raise BoardFault(f"Bob's tagger sent nothing for {timeout_s:g} s before the "
                                     f"end of the run: no sync, or the board was reset")
        except (LinkError, OSError) as exc:
            self.close()
            raise BoardFault(f"Bob's board: {exc}") from None
        try:
            self._check_settings()                  # a reset during the run voids it
        except (LinkError, OSError) as exc:
            self.close()
            raise BoardFault(f"Bob's board: {exc}") from None
        recs = Records.concat(parts)
        if recs.dropped_events:
            raise BoardFault(f"Bob's tagger dropped {recs.dropped_events} detections (FIFO overflow)")
        slot = recs.frame * self.frame_slots + recs.slot.astype(np.int64)
        keep = (recs.frame >= 0) & (slot < n_slots)
        slot, mask = slot[keep], recs.mask[keep]
        return detections_from_masks(slot, mask, self.cmap, self.rng)


def detections_from_masks(slot, mask, cmap, rng) -> BobDetections:
    """Turn tagger events (slot, channel mask) into detections (slot, basis, bit).

    A click in one basis gives that basis and bit; both detectors of one basis give a random
    bit (squashing); clicks in both bases give a random basis, then as above.
    """
    mask = np.asarray(mask, dtype=np.uint8)
    per_basis = np.zeros((2, mask.size), dtype=np.uint8)          # click code per basis
    for ch in range(cmap.shape[0]):
        hit = (mask >> ch) & 1
        basis, bit = int(cmap[ch, 0]), int(cmap[ch, 1])
        per_basis[basis] |= (hit << bit).astype(np.uint8)
    both = (per_basis[0] > 0) & (per_basis[1] > 0)
    basis = np.where(per_basis[0] > 0, 0, 1).astype(np.uint8)
    basis[both] = rng.integers(0, 2, int(both.sum()), dtype=np.uint8)
    clicks = per_basis[basis, np.arange(mask.size)]
    return squash_clicks(slot, basis, clicks, rng)
