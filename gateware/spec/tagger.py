"""Bob's time tagger: its register block and its event record layouts, defined once.

``TAGGER_BLOCK`` is placed in ``REGISTER_MAP`` by ``gateware.spec.registers``; the gateware
(``gateware.cores.tagger``), the golden model (``hil.tagger_model``) and the host decoder
(``controller.tagger``) all take their widths, fields and addresses from here.

Time is counted in *bins*: one bin is a clock period divided by ``samples`` (the samples per clock
per input, ``tagger.info.samples``). The arithmetic is in ``docs/tagger.md``.

Records are 32-bit words sent most significant byte first on the ``EVENTS`` stream. The top two
bits are the ``RecordKind``; the habits follow PicoQuant T3 (a wrap/epoch record carries the
coarse time, so detections stay compact) and Swabian's FPGA-link words (one word per event,
kind in the top bits, explicit overflow words):

* ``DETECTION``: one slot with at least one accepted click: channel ``mask``, ``slot`` in its
  frame and ``phase`` (bins from the slot start) of the earliest click.
* ``FRAME``: the absolute frame number (frames counted since ``clear``). Sent before the first
  detection of each frame that has one, and again after every overflow record, so a detection's
  frame is never ambiguous.
* ``OVERFLOW``: detections and markers that found the event queue full and were dropped, sent in
  the stream where they are missing (saturating counts).
* ``MARKER``: sync lost (the frame ended with no new frame origin) or sync acquired (the first
  frame origin after a loss, or after the tagger was enabled), with the low frame-number bits.
"""

from amaranth.lib import data, enum

from .registers_base import Access, Block, Register

__all__ = [
    "CHANNELS", "PHASE_BITS", "SLOT_BITS", "FRAME_BITS", "HIST_BINS", "DEAD_TIME_BITS",
    "SYNC_DELAY_BITS", "RecordKind", "MarkerCode", "DetectionRecord", "FrameRecord",
    "OverflowRecord", "MarkerRecord", "RECORD_LAYOUTS", "TaggerControl", "TaggerCommand",
    "TaggerStatus", "TaggerInfo", "GateLayout", "ChannelMapLayout", "TAGGER_BLOCK",
    "CHANNEL_COUNTERS", "GLOBAL_COUNTERS", "field_slice",
]

#: Detector input channels (two detectors per basis, passive-basis BB84).
CHANNELS = 4
#: Width of a phase within a slot, in bins: slot_period is at most 2**PHASE_BITS - 1 bins.
PHASE_BITS = 12
#: Width of a slot number within a frame: frame_slots is at most 2**SLOT_BITS - 1.
SLOT_BITS = 14
#: Width of the absolute frame number carried by FRAME records (wraps).
FRAME_BITS = 30
#: Phase histogram bins per channel.
HIST_BINS = 32
#: Width of a channel's dead time, in bins.
DEAD_TIME_BITS = 16
#: Width of the sync-to-frame-origin delay, in bins.
SYNC_DELAY_BITS = 24


class RecordKind(enum.Enum, shape=2):
    """What a 32-bit event record is: its top two bits."""
    #: Accepted clicks of one slot: detector mask, slot in frame, phase of the first click.
    DETECTION = 0
    #: The absolute frame number of the detections that follow.
    FRAME = 1
    #: Detections and markers dropped here because the event queue was full.
    OVERFLOW = 2
    #: A sync state change (MarkerCode).
    MARKER = 3


class MarkerCode(enum.Enum, shape=2):
    """Which sync state change a MARKER record reports."""
    #: The frame ended without a new frame origin: clicks are rejected until the next sync.
    SYNC_LOST = 1
    #: A frame origin after a loss or after enable: the frame in the record starts.
    SYNC_ACQUIRED = 2


#: DETECTION record, bit 31 down: kind, mask, slot, phase.
DetectionRecord = data.StructLayout({
    "phase": PHASE_BITS,
    "slot": SLOT_BITS,
    "mask": CHANNELS,
    "kind": RecordKind,
})

#: FRAME record: kind, absolute frame number (wraps at 2**FRAME_BITS).
FrameRecord = data.StructLayout({
    "frame": FRAME_BITS,
    "kind": RecordKind,
})

#: OVERFLOW record: kind, dropped markers (saturating), dropped detections (saturating).
OverflowRecord = data.StructLayout({
    "events": 24,
    "markers": 6,
    "kind": RecordKind,
})

#: MARKER record: kind, marker code, low 28 bits of the frame number (lost: the frame that ended;
#: acquired: the frame that starts).
MarkerRecord = data.StructLayout({
    "frame": 28,
    "code": MarkerCode,
    "kind": RecordKind,
})

#: Record layout per kind (each exactly 32 bits).
RECORD_LAYOUTS = {
    RecordKind.DETECTION: DetectionRecord,
    RecordKind.FRAME: FrameRecord,
    RecordKind.OVERFLOW: OverflowRecord,
    RecordKind.MARKER: MarkerRecord,
}


def field_slice(layout, name):
    """Return ``(offset, width)`` in bits of field ``name`` of a record or register layout."""
    fld = layout[name]
    return fld.offset, data.Layout.cast(fld.shape).size if isinstance(fld.shape, data.Layout) \
        else fld.width


TaggerControl = data.StructLayout({
    #: 1: tag clicks (start); 0: stop, the open event is flushed and sync is dropped.
    "enable": 1,
})

TaggerCommand = data.StructLayout({
    #: Zero every tagger counter, the phase histograms and the frame number.
    "clear": 1,
})

TaggerStatus = data.StructLayout({
    #: 1 while frames are being assigned (a frame origin was reached and the frame runs).
    "synced": 1,
    #: 1 while a histogram clear is still running (about HIST_BINS clocks).
    "clearing": 1,
    "_reserved": 14,
    #: Bytes of records waiting in the event FIFO for the link.
    "fifo_bytes": 16,
})

TaggerInfo = data.StructLayout({
    #: Samples per clock per input: one bin is 1 / (core.clk_hz * samples) s.
    "samples": 4,
    #: Detector channels.
    "channels": 4,
    #: Phase histogram bins per channel.
    "hist_bins": 8,
    #: Depth of the event FIFO, in 32-bit records, divided by 16.
    "fifo_words_div16": 16,
})

GateLayout = data.StructLayout({
    #: First accepted phase, in bins from the slot start.
    "start": PHASE_BITS,
    #: Accepted phases, in bins: start <= phase < start + width (no wrap into the next slot).
    "width": PHASE_BITS + 1,
})

ChannelMapLayout = data.StructLayout({
    #: Basis the channel's detector measures (0: Z, 1: X); used by the host's sifting.
    "basis": 1,
    #: Bit value the detector reports.
    "bit": 1,
})

#: Per-channel counters, each ``count=CHANNELS`` registers ``tagger.<name>[ch]``.
CHANNEL_COUNTERS = {
    "raw": "Clicks seen (the first rising edge of the channel in each clock), while enabled.",
    "dead": "Clicks rejected inside the channel's dead time.",
    "out_of_gate": "Synchronised clicks after dead time that fell outside the gate.",
    "accepted": "Clicks inside the gate, merged into detection events.",
}

#: Global counters ``tagger.<name>``.
GLOBAL_COUNTERS = {
    "events": "Detection events formed (one per slot with accepted clicks), sent or dropped.",
    "dropped_events": "Detection events dropped because the event queue was full.",
    "dropped_markers": "Marker records dropped because the event queue was full.",
    "frames": "Frame origins reached (frames started).",
    "sync_losses": "Frames that ended without a new origin (SYNC_LOST markers formed).",
    "sync_acquired": "Frame origins after a loss or enable (SYNC_ACQUIRED markers formed).",
    "no_sync": "Clicks after dead time rejected because no frame was running, all channels.",
}

_registers = [
    Register("info", Access.RO, "What this tagger is built with.", TaggerInfo),
    Register("control", Access.RW, "Start and stop.", TaggerControl),
    Register("command", Access.W1P, "One-shot commands.", TaggerCommand),
    Register("status", Access.RO, "Sync state and event FIFO fill.", TaggerStatus),
    Register("slot_period", Access.RW, f"Slot length, in bins (from tagger.info.samples "
             f"to {2**PHASE_BITS - 1}).", PHASE_BITS, init=8),
    Register("frame_slots", Access.RW, f"Slots per frame (1 to {2**SLOT_BITS - 1}).",
             SLOT_BITS, init=1024),
    Register("sync_delay", Access.RW, "Frame origin after the sync edge, in bins.",
             SYNC_DELAY_BITS),
    Register("gate", Access.RW, "Accepted phases within the slot, in bins.", GateLayout,
             init=GateLayout.const({"start": 0, "width": 2**PHASE_BITS}).as_value().value),
    Register("hist_shift", Access.RW, "Phase histogram bin = phase >> hist_shift "
             "(phases past the last bin are not counted).", 4),
    Register("dead_time", Access.RW, "Per channel: non-paralysable dead time, in bins.",
             DEAD_TIME_BITS, count=CHANNELS),
    Register("channel_map", Access.RW, "Per channel: the (basis, bit) its detector reports; "
             "host-side only.", ChannelMapLayout, count=CHANNELS),
]
_registers += [Register(name, Access.RO, f"Per channel: {doc}", count=CHANNELS)
               for name, doc in CHANNEL_COUNTERS.items()]
_registers += [Register(name, Access.RO, doc) for name, doc in GLOBAL_COUNTERS.items()]
_registers.append(Register(
    "hist", Access.RO, f"Phase histograms: element ch * {HIST_BINS} + bin counts channel ch's "
    "synchronised clicks after dead time by phase bin (memory-backed).",
    count=CHANNELS * HIST_BINS, memory=True))

TAGGER_BLOCK = Block("tagger", 0x0100, 0x0100, "Bob's time tagger: slot assignment, gate, dead "
                     "time, counters and phase histograms. Counters wrap at 2**32 and are "
                     "zeroed by tagger.command.clear.", tuple(_registers))
