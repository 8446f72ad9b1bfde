"""Bus-functional model of the detector and sync inputs: click times in bins to sample vectors.

A click at bin ``t`` is a pulse ``width`` bins long starting at sample ``t % N`` of clock
``t // N`` (bit 0 of a vector is the earliest sample). ``schedule`` turns the pulses of every
input into the list of clocks at which some vector changes; ``DetectorSource`` drives them onto
the DUT, waiting with ``ClockCycles`` from one change to the next, so idle clocks cost nothing.

The stimulus generators (Poisson trains, bursts...) return click times in bins and the seed they
used, so a failing scoreboard can name it.
"""

import numpy as np

__all__ = ["pulse_vectors", "schedule", "DetectorSource", "poisson", "burst", "spaced"]


def pulse_vectors(times, samples, width=1):
    """Return ``{clock: vector}`` of pulses starting at ``times`` (bins), ``width`` bins long."""
    out = {}
    for t in np.asarray(times, dtype=np.int64):
        for b in range(int(t), int(t) + width):
            clock, j = divmod(b, samples)
            out[clock] = out.get(clock, 0) | (1 << j)
    return out


def schedule(inputs, samples, width=1):
    """Return ``[(clock, {name: vector})]`` in clock order: the vectors that change at each clock.

    ``inputs`` maps an input name to its pulse times (bins). A vector returns to 0 after its pulse.
    """
    changes = {}
    for name, times in inputs.items():
        vectors = pulse_vectors(times, samples, width)
        for clock, vector in vectors.items():
            changes.setdefault(clock, {})[name] = vector
            if clock + 1 not in vectors:
                changes.setdefault(clock + 1, {}).setdefault(name, 0)
    return sorted(changes.items())


class DetectorSource:
    """Drive sample vectors onto DUT inputs ``signals`` ({name: handle}) from clock ``clock``."""

    def __init__(self, signals, clock, samples):
        self.signals = signals
        self.clock = clock
        self.samples = samples
        for handle in signals.values():
            handle.value = 0

    async def play(self, inputs, *, width=1):
        """Drive the pulses of ``inputs`` ({name: times in bins}); bin 0 is the clock after the
        call. Return the number of clocks played."""
        from cocotb.triggers import ClockCycles, RisingEdge
        await RisingEdge(self.clock)
        now = 0
        for clock, vectors in schedule(inputs, self.samples, width):
            if clock > now:
                await ClockCycles(self.clock, clock - now)
                now = clock
            for name, vector in vectors.items():
                self.signals[name].value = vector
        await ClockCycles(self.clock, 1)
        return now + 1


def spaced(times, samples, min_gap=2):
    """Return sorted unique ``times`` with any time closer than ``min_gap`` bins to the previous
    kept one removed (a pulse needs a low sample before its rising edge)."""
    times = np.unique(np.asarray(times, dtype=np.int64))
    keep = []
    last = None
    for t in times:
        if last is None or t - last >= min_gap:
            keep.append(t)
            last = t
    return np.array(keep, dtype=np.int64)


def poisson(rng, rate, start, stop, samples):
    """Return Poisson click times in bins in ``[start, stop)``, ``rate`` clicks per bin."""
    count = rng.poisson(rate * (stop - start))
    return spaced(rng.integers(start, stop, count), samples)


def burst(rng, start, count, gap_bins, samples):
    """Return ``count`` clicks from ``start``, each ``gap_bins`` +- 1 bin after the previous."""
    steps = gap_bins + rng.integers(-1, 2, count)
    return spaced(start + np.cumsum(np.maximum(steps, 2)), samples)
