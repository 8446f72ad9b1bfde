"""Alice's modulator: its register block, the per-slot choice packing and the report records.

``MODULATOR_BLOCK`` is placed in ``REGISTER_MAP`` by ``gateware.spec.registers``.

Time is cut into *slots* of ``modulator.slot_period`` system clock cycles; a *run* is the slots
played between ``control.run`` going to 1 and back to 0; a *frame* is ``frame_slots`` slots, the
first starting with the run. For each slot Alice plays one ``ChoiceLayout`` (4 bits: bit, basis,
intensity class) taken from the ``CHOICES`` stream, two slots to a byte (``ChoiceByteLayout``:
the earlier slot in bits 3:0). Outputs per slot: the modulator state (``Bb84State``, held for
the slot), the intensity setting (held), a laser trigger pulse ``trigger_width`` cycles long
starting ``trigger_delay`` cycles into the slot (none for vacuum), and the same pulse on the
sync output in the first slot of every frame.

When the choice FIFO is empty at a slot's start the slot goes out as vacuum with the laser off
(an *underflow*): it takes no choice, counts in ``underflow_slots`` and is reported. ``REPORTS``
carries ``ReportLayout`` records, ``REPORT_BYTES`` bytes each, least significant byte first
(``ReportLayout.from_bits(int.from_bytes(record, "little"))``): ``START`` (the run's first
slot), ``UNDERFLOW`` (each run of underflowed slots: first slot, count) and ``STOP`` (the run's
first slot and its length). The host numbers the slots of a run from START and hands its
choices, in order, to the slots no UNDERFLOW record covers. Slot numbers count every slot
played since reset.

The LFSR pattern (``control.lfsr``, latched when a run starts) plays ``lfsr_choices`` instead of
the stream: for bring-up only, flagged in ``status.lfsr`` and in every record of the run. A key
must never be distilled from it.
"""

from amaranth.lib import data, enum

from .registers_base import Access, Block, Register

__all__ = [
    "MODULATOR_BLOCK", "Basis", "Intensity", "Bb84State", "ChoiceLayout", "ChoiceByteLayout",
    "SLOTS_PER_BYTE", "ReportKind", "ReportLayout", "REPORT_BYTES", "MIN_SLOT_PERIOD",
    "LFSR_WIDTH", "LFSR_TAPS", "lfsr_step", "lfsr_choices", "choice_state", "choice_fires",
    "ModControlLayout", "ModCommandLayout", "ModStatusLayout", "SLOT_COUNTER_WIDTH",
]


class Basis(enum.Enum, shape=1):
    """Preparation basis of a slot."""
    #: Z (rectilinear): the key basis.
    Z = 0
    #: X (diagonal): the test basis.
    X = 1


class Intensity(enum.Enum, shape=2):
    """Intensity class of a slot; ``RESERVED`` is played as vacuum."""
    #: Signal intensity (mu).
    SIGNAL = 0
    #: Decoy intensity (nu).
    DECOY = 1
    #: Vacuum: the laser does not fire.
    VACUUM = 2
    #: Not a class: played as VACUUM (the LFSR pattern produces it).
    RESERVED = 3


class Bb84State(enum.Enum, shape=2):
    """Modulator state output: which of the four BB84 states (``basis * 2 + bit``)."""
    #: Z basis, bit 0 (H).
    Z0 = 0
    #: Z basis, bit 1 (V).
    Z1 = 1
    #: X basis, bit 0 (D).
    X0 = 2
    #: X basis, bit 1 (A).
    X1 = 3


#: One slot's choice, 4 bits; its low two bits are the ``Bb84State``.
ChoiceLayout = data.StructLayout({
    "bit": 1,
    "basis": Basis,
    "intensity": Intensity,
})

#: Slots per byte of the CHOICES stream.
SLOTS_PER_BYTE = 2
#: One byte of the CHOICES stream: element 0 (bits 3:0) is the earlier slot.
ChoiceByteLayout = data.ArrayLayout(ChoiceLayout, SLOTS_PER_BYTE)


class ReportKind(enum.Enum, shape=8):
    """Kinds of REPORTS record."""
    #: A run started: ``first_slot`` is its first slot; ``count`` is 0.
    START = 1
    #: ``count`` slots from ``first_slot`` went out as vacuum, laser off: the FIFO was empty.
    UNDERFLOW = 2
    #: A run ended: it played ``count`` slots from ``first_slot`` (underflowed ones included).
    STOP = 3


#: Width of the slot counter, in bits.
SLOT_COUNTER_WIDTH = 48

#: A REPORTS record (96 bits), sent least significant byte first.
ReportLayout = data.StructLayout({
    "kind": ReportKind,
    #: 1 when the run plays the LFSR test pattern (never a key).
    "lfsr": 1,
    "reserved": 7,
    "first_slot": SLOT_COUNTER_WIDTH,
    "count": 32,
})
#: Bytes per REPORTS record.
REPORT_BYTES = ReportLayout.size // 8

#: Shortest slot, in clock cycles; a shorter ``slot_period`` is played as this.
MIN_SLOT_PERIOD = 4

#: The bring-up LFSR: Fibonacci, x^32 + x^22 + x^2 + x + 1 (maximal length), shifted left.
LFSR_WIDTH = 32
LFSR_TAPS = (32, 22, 2, 1)


def lfsr_step(state):
    """Return the LFSR state after one shift (ints)."""
    feedback = 0
    for tap in LFSR_TAPS:
        feedback ^= (state >> (tap - 1)) & 1
    return ((state << 1) | feedback) & ((1 << LFSR_WIDTH) - 1)


def lfsr_choices(seed, count):
    """Return the first ``count`` choice nibbles (ints) the LFSR pattern plays from ``seed``.

    Each slot plays the state's low 4 bits, then the state shifts 4 times. Seed 0 (the lock-up
    state) is played as 1, as the gateware does.
    """
    state = (seed & ((1 << LFSR_WIDTH) - 1)) or 1
    out = []
    for _ in range(count):
        out.append(state & 0xF)
        for _ in range(4):
            state = lfsr_step(state)
    return out


def choice_state(nibble):
    """Return the ``Bb84State`` value (int) a choice nibble plays."""
    return nibble & 0x3


def choice_fires(nibble):
    """Return True if a choice nibble fires the laser (signal or decoy)."""
    return (nibble >> 2) in (Intensity.SIGNAL.value, Intensity.DECOY.value)


ModControlLayout = data.StructLayout({
    #: 1: run (slots are played from the next clock cycle); 0: stop at the end of the slot.
    "run": 1,
    #: Play the LFSR test pattern instead of the CHOICES stream (latched at run start). Insecure.
    "lfsr": 1,
})

ModCommandLayout = data.StructLayout({
    #: Zero ``underflow_slots`` and ``reports_lost``.
    "clear_counters": 1,
    #: Empty the choice FIFO (only while stopped).
    "flush": 1,
    #: Copy the slot counter into ``slot_lo``/``slot_hi``.
    "snapshot": 1,
})

ModStatusLayout = data.StructLayout({
    #: 1 while a run plays slots.
    "running": 1,
    #: 1 while (or since) a run plays the LFSR pattern.
    "lfsr": 1,
    #: 1 while the last slot played was an underflow.
    "underflow": 1,
    "reserved": 13,
    #: Bytes of room in the choice FIFO.
    "choices_free": 16,
})

MODULATOR_BLOCK = Block("modulator", 0x0200, 0x0100, "Alice's modulator: slot clock, choice FIFO and outputs.", (
    Register("control", Access.RW, "Run and pattern control.", ModControlLayout),
    Register("command", Access.W1P, "One-shot commands.", ModCommandLayout),
    Register("slot_period", Access.RW, "Slot length, in clock cycles (at least MIN_SLOT_PERIOD = 4).",
             16, init=48),
    Register("frame_slots", Access.RW, "Slots per frame; a sync pulse marks each frame's first slot.",
             24, init=1024),
    Register("trigger_delay", Access.RW, "Laser trigger and sync pulse start, in clock cycles after the slot start.",
             16, init=0),
    Register("trigger_width", Access.RW, "Laser trigger and sync pulse length, in clock cycles (0 acts as 1).",
             16, init=1),
    Register("lfsr_seed", Access.RW, "Seed of the LFSR test pattern, loaded at run start (0 acts as 1).",
             init=1),
    Register("status", Access.RO, "Run state and FIFO room.", ModStatusLayout),
    Register("choices_depth", Access.RO, "Size of the choice FIFO, in bytes (two slots a byte)."),
    Register("slot_lo", Access.RO, "Slot counter at the last command.snapshot, bits 31:0."),
    Register("slot_hi", Access.RO, "Slot counter at the last command.snapshot, bits 47:32.", 16),
    Register("underflow_slots", Access.RO, "Slots played as vacuum because the choice FIFO was empty."),
    Register("reports_lost", Access.RO, "REPORTS records dropped because the report FIFO was full."),
))
