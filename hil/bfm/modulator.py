"""Bus-functional model of Alice's outputs for cocotb: what the pins play, slot by slot.

``ModulatorMonitor`` samples the pins once per clock cycle, mid-cycle (after the falling edge,
once the values settle), and cuts the cycles into slots at the core's ``slot_start`` strobe (the
cycle before each slot's first). Per slot it keeps the held ``state`` and ``intensity`` (read in
the slot's first cycle) and the cycle offsets, from the slot's first cycle, at which ``laser``
and ``sync`` were high.
"""

from dataclasses import dataclass, field

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly

__all__ = ["SlotSample", "ModulatorMonitor"]


@dataclass
class SlotSample:
    """What the pins played in one slot."""
    state: int
    intensity: int
    laser: list = field(default_factory=list)
    sync: list = field(default_factory=list)

    def as_tuple(self):
        """Return ``(state, intensity, laser fired, sync fired)`` as the model's trace has it."""
        return (self.state, self.intensity, int(bool(self.laser)), int(bool(self.sync)))


class ModulatorMonitor:
    """Record ``SlotSample`` per slot into ``slots``; starts monitoring at construction.

    ``clock`` is the DUT clock; ``state``, ``intensity``, ``laser``, ``sync`` and ``slot_start``
    are DUT signal handles.
    """

    def __init__(self, clock, *, state, intensity, laser, sync, slot_start):
        self.clock = clock
        self.pins = (state, intensity, laser, sync)
        self.slot_start = slot_start
        self.slots = []
        self._task = cocotb.start_soon(self._run())

    def stop(self):
        """Stop monitoring."""
        self._task.cancel()

    async def _run(self):
        state, intensity, laser, sync = self.pins
        new, offset = False, 0
        while True:
            await FallingEdge(self.clock)
            await ReadOnly()
            if new:
                self.slots.append(SlotSample(int(state.value), int(intensity.value)))
                offset, new = 0, False
            elif self.slots:
                offset += 1
            if self.slots and int(laser.value):
                self.slots[-1].laser.append(offset)
            if self.slots and int(sync.value):
                self.slots[-1].sync.append(offset)
            new = bool(int(self.slot_start.value))
