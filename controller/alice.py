"""Alice's host side: random per-slot choices, the feeder that streams them, and the sent record.

* ``open_source(spec)``: where the randomness comes from: ``"os"`` (the OS CSPRNG, ``os.urandom``),
  a file or device path (a QRNG's character device, or a recorded file), or a serial URL
  (``/dev/ttyACM0``, ``rfc2217://...``, anything pyserial's ``serial_for_url`` opens).
* ``ChoiceSampler``: turns uniform random bytes into (bit, basis, intensity) per slot with the
  biased basis and intensity probabilities, without bias: each choice is a uniform integer below
  ``RESOLUTION`` drawn by rejection from 32-bit words, compared with the cumulative weights
  (probabilities are rounded to multiples of ``1 / RESOLUTION``). Key bits are uniform.
* ``pack_choices``: the CHOICES stream bytes, laid out by ``gateware.spec.modulator``.
* ``SentRecord``: what was sent, slot by slot (numpy arrays), with the board's REPORTS applied
  (START numbers the run's slots, UNDERFLOW marks slots unusable, STOP closes the run).
* ``AliceFeeder``: configures the modulator, keeps its FIFO filled at the slot rate, runs, stops,
  and keeps the record.

A record of a run played from the LFSR test pattern is flagged ``insecure``;
``SentRecord.for_distillation()`` refuses it, so no key can be distilled from it.
"""

import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from gateware.spec.modulator import (
    ChoiceByteLayout, ChoiceLayout, Intensity, ReportKind, ReportLayout, REPORT_BYTES,
    SLOTS_PER_BYTE, MIN_SLOT_PERIOD,
)
from gateware.spec.protocol import StreamChannel

__all__ = ["RESOLUTION", "open_source", "OSSource", "FileSource", "SerialSource",
           "SourceExhausted", "ChoiceSampler", "pack_choices", "unpack_choices", "SentRecord",
           "InsecurePattern", "AliceFeeder"]

#: Probabilities are multiples of 1 / RESOLUTION: decimal ones (0.1, 0.125...) are exact, which
#: a power of two could not give; 2**32 is no multiple of it, hence the rejection.
RESOLUTION = 10 ** 6
_WORD_LIMIT = (1 << 32) // RESOLUTION * RESOLUTION   # reject words at or above this


class SourceExhausted(RuntimeError):
    """The random source gave fewer bytes than asked (end of file, or a silent device)."""


class OSSource:
    """The operating system's CSPRNG (``os.urandom``)."""

    name = "os"

    def read(self, n):
        """Return ``n`` random bytes."""
        return os.urandom(n)

    def close(self):
        """Nothing to close."""


class _StreamSource:
    """A source read in order from a stream (``self._stream``) until ``n`` bytes have come."""

    name = ""
    _stream = None

    def read(self, n):
        """Return the next ``n`` bytes; raise SourceExhausted if the stream ends or goes quiet."""
        out = bytearray()
        while len(out) < n:
            chunk = self._stream.read(n - len(out))
            if not chunk:
                raise SourceExhausted(self._exhausted(len(out), n))
            out += chunk
        return bytes(out)

    def _exhausted(self, got, n):
        """Return the message for a stream that gave ``got`` of ``n`` bytes."""
        raise NotImplementedError

    def close(self):
        """Close the stream."""
        self._stream.close()


class FileSource(_StreamSource):
    """Bytes from a file or character device (a QRNG), read in order."""

    def __init__(self, path):
        self.name = str(path)
        self._stream = open(path, "rb", buffering=0)

    def _exhausted(self, got, n):
        return (f"random source {self.name} ended after {got} of {n} bytes; a key needs fresh "
                f"randomness, not a rerun")


class SerialSource(_StreamSource):
    """Bytes from a QRNG on a serial port (any pyserial URL); ``timeout`` in seconds per read."""

    def __init__(self, url, timeout=1.0, port=None):
        import serial
        self.name = url
        self.port = self._stream = port or serial.serial_for_url(url, timeout=timeout)

    def _exhausted(self, got, n):
        return (f"QRNG {self.name} gave {got} of {n} bytes, then nothing within its timeout; is "
                f"it connected and running?")


def open_source(spec):
    """Return a random source for ``spec``: ``"os"``, a serial URL (``scheme://`` or
    ``/dev/tty*``), or a file/device path."""
    if spec in (None, "", "os"):
        return OSSource()
    spec = str(spec)
    if "://" in spec or spec.startswith("/dev/tty"):
        return SerialSource(spec)
    if not Path(spec).exists():
        raise FileNotFoundError(f"random source {spec!r}: no such file or device; give 'os', a "
                                f"QRNG device path or a serial URL")
    return FileSource(spec)


def _weights(probabilities, what):
    """Return integer weights summing to RESOLUTION for ``probabilities`` (summing to 1)."""
    fracs = [Fraction(p).limit_denominator(RESOLUTION) for p in probabilities]
    if any(f < 0 for f in fracs) or abs(float(sum(fracs)) - 1) > 1e-9:
        raise ValueError(f"{what} probabilities {probabilities} must be >= 0 and sum to 1")
    weights = [round(f * RESOLUTION) for f in fracs]
    weights[max(range(len(weights)), key=lambda i: weights[i])] += RESOLUTION - sum(weights)
    return weights


class ChoiceSampler:
    """Draw per-slot choices: basis X with ``p_x`` (Z otherwise), intensity signal/decoy/vacuum
    with ``p_signal``/``p_decoy``/``p_vacuum`` (summing to 1), key bit uniform."""

    def __init__(self, p_x=0.5, p_signal=1.0, p_decoy=0.0, p_vacuum=0.0):
        self.basis_cum = np.cumsum(_weights([1 - p_x, p_x], "basis"))
        self.intensity_cum = np.cumsum(_weights([p_signal, p_decoy, p_vacuum], "intensity"))
        self.probabilities = {"p_x": p_x, "p_signal": p_signal, "p_decoy": p_decoy,
                              "p_vacuum": p_vacuum}

    @staticmethod
    def uniform(source, n):
        """Return ``n`` uniform integers below RESOLUTION from ``source`` (rejection sampling)."""
        out = np.empty(0, dtype=np.uint32)
        while len(out) < n:
            need = n - len(out)
            words = np.frombuffer(source.read(4 * (need + need // 64 + 8)), dtype="<u4")
            out = np.concatenate([out, words[words < _WORD_LIMIT] % RESOLUTION])
        return out[:n]

    def sample(self, source, n):
        """Return ``(bit, basis, intensity)``: three uint8 arrays of ``n`` slots."""
        bits = np.unpackbits(np.frombuffer(source.read((n + 7) // 8), dtype=np.uint8))[:n]
        basis = np.searchsorted(self.basis_cum, self.uniform(source, n), side="right")
        intensity = np.searchsorted(self.intensity_cum, self.uniform(source, n), side="right")
        return bits.astype(np.uint8), basis.astype(np.uint8), intensity.astype(np.uint8)


def _offsets():
    return {name: field.offset for name, field in ChoiceLayout}


def pack_choices(bit, basis, intensity):
    """Return the CHOICES bytes for per-slot arrays (an even number of slots)."""
    off = _offsets()
    nib = (np.asarray(bit, np.uint8) << off["bit"]) | (np.asarray(basis, np.uint8) << off["basis"]) \
        | (np.asarray(intensity, np.uint8) << off["intensity"])
    if len(nib) % SLOTS_PER_BYTE:
        raise ValueError(f"{len(nib)} slots: the CHOICES stream carries {SLOTS_PER_BYTE} a byte")
    step = ChoiceByteLayout.elem_shape.size
    out = np.zeros(len(nib) // SLOTS_PER_BYTE, np.uint8)
    for i in range(SLOTS_PER_BYTE):
        out |= nib[i::SLOTS_PER_BYTE] << (i * step)
    return out.tobytes()


def unpack_choices(data):
    """Return ``(bit, basis, intensity)`` arrays from CHOICES bytes (inverse of pack_choices)."""
    raw = np.frombuffer(bytes(data), np.uint8)
    step = ChoiceByteLayout.elem_shape.size
    nib = np.stack([(raw >> (i * step)) & ((1 << step) - 1)
                    for i in range(SLOTS_PER_BYTE)], axis=1).reshape(-1)
    off = _offsets()
    return ((nib >> off["bit"]) & 1, (nib >> off["basis"]) & 1, (nib >> off["intensity"]) & 3)


class InsecurePattern(RuntimeError):
    """The record holds slots of the LFSR test pattern: no key may come from it."""


class SentRecord:
    """The slot-indexed record of what Alice sent, with the board's reports applied.

    ``add(bit, basis, intensity)`` appends choices in the order they were streamed;
    ``apply_reports(raw)`` takes REPORTS bytes. ``slots()`` returns the played slots as arrays:
    ``slot`` (absolute slot number), ``bit``, ``basis``, ``intensity`` and ``usable`` (False for
    underflowed slots, which went out as vacuum with the laser off; their choice fields are 0 and
    intensity VACUUM). Choices streamed but not (yet) played are ``pending``.
    """

    def __init__(self):
        self._choices = [np.empty(0, np.uint8)] * 3
        self._chunks = [[], [], []]
        self.runs = []              # [first_slot, count or None, [(uf_first, uf_count), ...]]
        self.insecure = False
        self._partial = b""

    def add(self, bit, basis, intensity):
        """Append streamed choices (arrays of equal length)."""
        for chunks, values in zip(self._chunks, (bit, basis, intensity)):
            chunks.append(np.asarray(values, np.uint8))

    def _arrays(self):
        for i, chunks in enumerate(self._chunks):
            if chunks:
                self._choices[i] = np.concatenate([self._choices[i], *chunks])
                chunks.clear()
        return self._choices

    @property
    def streamed(self):
        """Return the number of choices streamed so far."""
        return len(self._arrays()[0])

    def apply_reports(self, raw):
        """Apply REPORTS bytes (whole records, or a part kept until the rest arrives)."""
        raw = self._partial + bytes(raw)
        whole = len(raw) - len(raw) % REPORT_BYTES
        self._partial = raw[whole:]
        for i in range(0, whole, REPORT_BYTES):
            rec = ReportLayout.from_bits(int.from_bytes(raw[i:i + REPORT_BYTES], "little"))
            kind, first, count = rec.kind, int(rec.first_slot), int(rec.count)
            self.insecure |= bool(rec.lfsr)
            if kind == ReportKind.START:
                self.runs.append([first, None, []])
            elif not self.runs:
                raise ValueError(f"{kind.name} report before any START: reports were lost")
            elif kind == ReportKind.UNDERFLOW:
                self.runs[-1][2].append((first, count))
            elif kind == ReportKind.STOP:
                self.runs[-1][1] = count

    @property
    def stopped(self):
        """Return True if every run seen has its STOP."""
        return all(run[1] is not None for run in self.runs)

    def slots(self):
        """Return ``{slot, bit, basis, intensity, usable, pending}`` for every closed run."""
        bit, basis, intensity = self._arrays()
        out = {k: [] for k in ("slot", "bit", "basis", "intensity", "usable")}
        used = 0
        for first, count, underflows in self.runs:
            if count is None:
                break
            usable = np.ones(count, bool)
            for uf_first, uf_count in underflows:
                usable[uf_first - first:uf_first - first + uf_count] = False
            n = int(usable.sum())
            if used + n > len(bit):
                raise ValueError(f"the board played {used + n} choices but {len(bit)} were "
                                 f"streamed: the record is not from this board's run")
            fields = {"bit": bit, "basis": basis, "intensity": intensity}
            for name, values in fields.items():
                col = np.zeros(count, np.uint8)
                if name == "intensity":
                    col[:] = Intensity.VACUUM.value
                col[usable] = values[used:used + n]
                out[name].append(col)
            out["slot"].append(np.arange(first, first + count, dtype=np.int64))
            out["usable"].append(usable)
            used += n
        dtypes = {"slot": np.int64, "usable": bool}
        result = {k: (np.concatenate(v) if v else np.empty(0, dtypes.get(k, np.uint8)))
                  for k, v in out.items()}
        result["pending"] = len(bit) - used
        return result

    def drop_pending(self):
        """Forget choices streamed but never played (after the board's FIFO was flushed)."""
        played = self.streamed - self.slots()["pending"]
        self._choices = [a[:played] for a in self._arrays()]

    def for_distillation(self):
        """Return ``slots()`` for key distillation; raise InsecurePattern for an LFSR record."""
        if self.insecure:
            raise InsecurePattern("this record comes from the LFSR test pattern (status.lfsr): it "
                                  "is predictable, and no key may be distilled from it")
        return self.slots()


def _slot_order(ranges):
    """Return the slot indices in the order the board took the (offset, length) byte ranges, or
    None when it took them in order."""
    expected = 0
    for offset, length in ranges:
        if offset != expected:
            break
        expected += length
    else:
        return None
    return np.concatenate([np.arange(SLOTS_PER_BYTE * o, SLOTS_PER_BYTE * (o + n))
                           for o, n in ranges])


class AliceFeeder:
    """Stream random choices to a board's modulator and keep the record.

    ``device`` is a ``controller.device.Device``; ``sampler`` a ChoiceSampler; ``source`` a random
    source (``open_source``). ``slot_period`` (clock cycles) and ``frame_slots`` configure the
    run; ``chunk`` is the most choice bytes sent per pump. Flow control: each ``pump()`` tops the
    FIFO up to full from the free space the board reports, several frames in flight (the link
    client's ``window``); ``run()`` pumps at least every
    ``poll`` seconds, well inside the time the FIFO lasts (``fifo_seconds``).
    """

    def __init__(self, device, sampler=None, source=None, *, slot_period=48, frame_slots=1024,
                 chunk=4096):
        if slot_period < MIN_SLOT_PERIOD:
            raise ValueError(f"slot_period {slot_period} cycles is below the minimum {MIN_SLOT_PERIOD}")
        self.device = device
        self.sampler = sampler or ChoiceSampler()
        self.source = source or OSSource()
        self.slot_period = slot_period
        self.frame_slots = frame_slots
        self.chunk = chunk
        self.record = SentRecord()
        self.depth = None
        self.clk_hz = None
        self._lfsr = False
        self._runs = 0            # runs this feeder started

    @property
    def slot_hz(self):
        """Return the slot rate, in slots per second."""
        return self.clk_hz / self.slot_period

    @property
    def fifo_seconds(self):
        """Return how long a full choice FIFO lasts at the slot rate, in seconds."""
        return self.depth * SLOTS_PER_BYTE / self.slot_hz

    def configure(self, *, lfsr=False):
        """Stop any run, flush the FIFO and set the slot period and frame size."""
        dev = self.device
        dev.write("modulator.control", run=0, lfsr=0)
        self._wait_stopped()
        dev.write("modulator.command", flush=1)
        dev.write("modulator.slot_period", self.slot_period)
        dev.write("modulator.frame_slots", self.frame_slots)
        self.depth = dev.read("modulator.choices_depth")
        self.clk_hz = dev.read("core.clk_hz")
        self._lfsr = lfsr

    def pump(self):
        """Top the choice FIFO up; apply any reports; return the bytes sent."""
        link = self.device.link
        free = link.stream_query(StreamChannel.CHOICES)
        n = min(free, self.chunk)
        if n:
            bit, basis, intensity = self.sampler.sample(self.source, SLOTS_PER_BYTE * n)
            # Frames in flight: a frame lost on the way may reach the FIFO after later ones. The
            # choices are i.i.d., so that is harmless as long as the record follows the FIFO's
            # order, which stream_write returns.
            ranges = link.stream_write(StreamChannel.CHOICES, pack_choices(bit, basis, intensity),
                                       reorder=True)
            order = _slot_order(ranges)
            if order is not None:
                bit, basis, intensity = bit[order], basis[order], intensity[order]
            self.record.add(bit, basis, intensity)
        self.record.apply_reports(link.stream_read(StreamChannel.REPORTS))
        return n

    def run(self, seconds, *, poll=None):
        """Prefill, start a run, keep the FIFO fed for ``seconds`` (host time), stop; return the
        record's ``slots()``."""
        if self.depth is None:
            self.configure()
        poll = min(self.fifo_seconds / 4, 0.05) if poll is None else poll
        self.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump()
            time.sleep(poll)
        self.stop()
        return self.record.slots()

    def start(self):
        """Fill the choice FIFO, then start a run (``configure()`` first)."""
        if self.depth is None:
            self.configure()
        while self.pump():
            pass
        self.device.write("modulator.control", run=1, lfsr=int(self._lfsr))
        self._runs += 1

    def stop(self, timeout=2.0):
        """Stop the run, collect its reports up to STOP, flush the unplayed choices."""
        dev = self.device
        dev.write("modulator.control", run=0, lfsr=int(self._lfsr))
        self._wait_stopped(timeout)
        deadline = time.monotonic() + timeout
        while len(self.record.runs) < self._runs or not self.record.stopped:
            if time.monotonic() > deadline:
                raise TimeoutError("the board's STOP report did not arrive: check the REPORTS "
                                   "stream (modulator.reports_lost) and the link")
            self.record.apply_reports(dev.link.stream_read(StreamChannel.REPORTS, size=REPORT_BYTES,
                                                           timeout=0.05))
        dev.write("modulator.command", flush=1)
        self.record.drop_pending()

    def _wait_stopped(self, timeout=2.0):
        deadline = time.monotonic() + timeout
        while self.device.fields("modulator.status")["running"]:
            if time.monotonic() > deadline:
                raise TimeoutError("the modulator did not stop within its slot")
            time.sleep(0.001)
