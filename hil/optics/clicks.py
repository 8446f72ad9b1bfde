"""What the optics model hands to Bob's board: click records per detector channel, and sync times."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np


@dataclass(frozen=True)
class Clicks:
    """Registered clicks in time order (one entry per click).

    time_ps: click time at Bob in ps from the emission of slot 0 (int64).
    channel: output channel (``Receiver.channel_map`` of the detector). detector: 0 = Z0, 1 = Z1,
    2 = X0, 3 = X1. slot: the slot the click belongs to (an afterpulse: the slot whose arrival
    time is nearest). kind: 0 photon, 1 dark count, 2 afterpulse. eve_knows: Eve holds the bit of
    that slot. bit, basis, intensity: Alice's choices of the slot, -1 for afterpulses (ground
    truth for tests and the HIL suite; a board never sees them).
    """

    time_ps: np.ndarray
    channel: np.ndarray
    detector: np.ndarray
    slot: np.ndarray
    kind: np.ndarray
    eve_knows: np.ndarray
    bit: np.ndarray
    basis: np.ndarray
    intensity: np.ndarray

    def __len__(self):
        return int(self.time_ps.shape[0])

    def select(self, mask) -> "Clicks":
        """Return the clicks where ``mask`` is true (or at the given indices)."""
        return Clicks(**{f.name: getattr(self, f.name)[mask] for f in fields(self)})

    def to_bins(self, bin_ps: float) -> np.ndarray:
        """Return the click times in bins of ``bin_ps`` ps (floor, int64), e.g. a tagger's LSB."""
        return np.floor_divide(self.time_ps, int(bin_ps)) if float(bin_ps).is_integer() \
            else np.floor(self.time_ps / bin_ps).astype(np.int64)

    @staticmethod
    def concatenate(parts) -> "Clicks":
        """Join click records of consecutive chunks."""
        parts = list(parts)
        return Clicks(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])
                         for f in fields(Clicks)})


@dataclass(frozen=True)
class RunResult:
    """The output of a run: clicks, sync times (ps, one per frame start) and the slot range."""

    clicks: Clicks
    sync_ps: np.ndarray
    first_slot: int
    end_slot: int

    @property
    def n_slots(self) -> int:
        """Return the number of slots this result covers."""
        return self.end_slot - self.first_slot

    @staticmethod
    def concatenate(parts) -> "RunResult":
        """Join the results of consecutive chunks (an empty list gives an empty result)."""
        parts = list(parts)
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return RunResult(Clicks(*(empty,) * 9), empty, 0, 0)
        return RunResult(Clicks.concatenate(p.clicks for p in parts),
                         np.concatenate([p.sync_ps for p in parts]),
                         parts[0].first_slot, parts[-1].end_slot)
