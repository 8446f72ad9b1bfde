"""A whole simulated bench on loopback: Alice's and Bob's boards, the fibre, the instruments.

``Testbed(...)`` starts, on 127.0.0.1 only:

* Alice's board: the behavioural model (``hil.model``, role ALICE) or the RTL twin (``hil.twin``,
  our gateware in Verilator) whose played slots, read from its pins, feed the fibre;
* Bob's board: the behavioural model (role BOB) or the RTL twin with its detector pins driven
  from the fibre;
* the fibre between them (``hil.fibre.Fibre``: the optics model at ``distance_km`` of the preset);
* the instruments served as SCPI over TCP (``hil.scpi.SimulatedBench``): the VOA object is the
  optics model's attenuator and the detector its detector settings, so a VOA set over VISA
  changes the loss the photons see from the next batch of slots on.

Alice plays her slots in real time (``realtime=True``, what ``qkdnode testbed up`` and the demo
use: a pump thread moves the light every ``pump_interval`` s) or only when told
(``realtime=False``: ``advance(n)`` plays n slots, which makes tests exact and fast)::

    with Testbed(distance_km=25, realtime=False) as tb:
        tb.alice_url, tb.bob_url, tb.resources     # socket://127.0.0.1:PORT, {'voa': 'TCPIP::...'}
        tb.timebase.bob_settings()                 # Tagger.configure(**...) consistent with Alice
        tb.advance(100_000); tb.flush()
"""

from __future__ import annotations

import threading
import time

from gateware.spec.registers import Role

from .fibre import Fibre, ModelBob, TimeBase

__all__ = ["Testbed", "LinkedDetector", "BOARDS", "serve"]

BOARDS = ("model", "rtl")


class LinkedDetector:
    """The simulated detector (``hil.scpi.SimulatedDetector``) as the optics model reads it.

    Its ``DET:EFF`` setting scales the preset's efficiency: the power-on setting
    (``reference_percent``, 10 %) is the preset's own (the instrument only takes 10/15/20/25 %,
    the presets' detectors are 4.5 % or 10 %). Dead time, gate mode and gate width are the
    instrument's; the model's count rate is written back to it (``DET:COUN?``).
    """

    def __init__(self, instrument, efficiency, reference_percent=None):
        self.instrument = instrument
        self.efficiency = float(efficiency)
        self.reference_percent = float(reference_percent or instrument.efficiency_percent)

    @property
    def efficiency_percent(self):
        """Return the efficiency the optics model applies, in %."""
        return 100.0 * self.efficiency * self.instrument.efficiency_percent / self.reference_percent

    @property
    def dead_time_us(self):
        return self.instrument.dead_time_us

    @property
    def gate_mode(self):
        return self.instrument.gate_mode

    @property
    def gate_width_ns(self):
        return self.instrument.gate_width_ns

    @property
    def count_rate_hz(self):
        return self.instrument.count_rate_hz

    @count_rate_hz.setter
    def count_rate_hz(self, value):
        self.instrument.count_rate_hz = value


class Testbed:
    """The simulated bench; a context manager (``start()``/``stop()``).

    boards: ``"model"`` or ``"rtl"`` (both boards' gateware in Verilator); ``alice``: Alice's
    board kind if not ``boards`` (``Testbed("rtl", alice="model")``: Bob's twin only).
    preset / distance_km: the optics (``hil.optics.preset``). timebase: a ``TimeBase``
    (default: 48-cycle slots, 1024-slot frames, 2 samples per clock). seed: the optics model's
    seed. attack: an eavesdropper from ``hil.optics.eve``. link_detector: the simulated
    detector's settings drive the optics model's detectors (initialised from the preset).

    With Alice's twin, ``realtime`` lets her play on her own simulated clock, at most
    ``ahead_frames`` frames ahead of what Bob has taken (Bob's twin: of what his pins have
    played); ``stretch_frames``: whole frames handed to Bob's twin at a time (each stretch is a
    tagger run with a gap after it, so longer stretches waste less of his time).

    A model Bob's event FIFO drains at the link's record rate of ``bob_baud`` in his tagger's
    time (``hil.model.BobBlock``; the suite gives the twin's ``hil.twin.BAUD``, so both Bobs
    overflow alike); None (default) is a link as fast as the host reads, which is what a
    bench on simulated time whose Alice is fed as fast as her host streams needs (the demo).
    ``bob_tagger``: a model Bob's ``TaggerParams`` (default: the gateware's default), the one
    a board builds its tagger with, e.g. ``boards.get_board("icebreaker").tagger`` (no
    hardware histograms: ``hist_bins`` 0, the host builds them from the records). Bob's twin
    is built with the default ``TaggerParams``: ``boards="rtl"`` refuses another.

    When Alice's light stops (``flush``, or ``pump`` with her run stopped) a model Bob's clock
    runs on until his open frame has ended with sync lost and his FIFO has sent everything, as
    a board's does (``BobBlock.idle``); the next light is moved later if it would come before.
    """

    __test__ = False          # not a pytest test class, whatever the name says

    def __init__(self, boards="model", *, preset="gys2005", distance_km=25.0, timebase=None,
                 seed=1, realtime=True, pump_interval=0.02, attack=None, link_detector=True,
                 optics=None, alice=None, ahead_frames=None, stretch_frames=None,
                 bob_baud=None, bob_tagger=None):
        alice = boards if alice is None else alice
        for kind in (boards, alice):
            if kind not in BOARDS:
                raise ValueError(f"boards {kind!r}: expected one of {', '.join(BOARDS)}")
        if bob_tagger is not None and boards == "rtl":
            from gateware.cores.tagger import TaggerParams
            if bob_tagger != TaggerParams():
                raise ValueError(f"bob_tagger {bob_tagger}: Bob's RTL twin is built with the "
                                 f"default TaggerParams(); use boards='model' for another")
        self.boards = boards
        self.alice_kind = alice
        self.preset = preset
        self.distance_km = float(distance_km)
        self.timebase = timebase or TimeBase()
        self.seed = seed
        self.realtime = realtime
        self.pump_interval = pump_interval
        self.attack = attack
        self.link_detector = link_detector
        self.bob_baud = bob_baud
        self.bob_tagger = bob_tagger
        self._optics = optics
        self._thread = None
        self._stop = threading.Event()
        self._servers = []
        self.twin = None
        self.alice_twin = None
        self.alice_board = None
        self.error = None
        # Bob's twin spends a gap of two frames per stretch: hand him several frames at once
        self.stretch_frames = stretch_frames or (4 if boards == "rtl" and alice == "rtl" else 1)
        self.ahead_frames = ahead_frames or 2 * self.stretch_frames + 2

    # -- life cycle ---------------------------------------------------------------------------

    def start(self):
        """Start the instruments, both boards and the fibre; return self."""
        from hil.model import ModelBoard, ModelServer
        from hil.optics import preset
        from hil.scpi import SimulatedBench
        tb = self.timebase
        try:
            optics = self._optics or preset(self.preset, length_km=self.distance_km)
            self.bench = SimulatedBench().start()
            detector = None
            if self.link_detector:
                r = optics.receiver
                det = self.bench.detector
                det.dead_time_us = max(r.dead_time_ps / 1e6, 0.1)   # the instrument's minimum
                det.gate_mode = "GATED" if r.gated else "FREE"
                det.gate_width_ns = min(max(r.gate_width_ps / 1e3, 0.1), 25.0)
                detector = LinkedDetector(det, r.efficiency[0])
            if self.boards == "rtl":
                from hil.twin import Twin
                # between stretches, more than a frame of silence: each stretch is one tagger
                # run; realtime: Alice's clock is the twin's simulated time (it is slower
                # than the wall clock), so the light never queues up in front of the twin
                # (with Alice's twin, her own simulated time, flow-controlled by Bob's)
                self.twin = Twin(Role.BOB, samples=tb.samples, clicks=True,
                                 gap_bins=2 * tb.frame_bins + 4 * tb.slot_bins,
                                 free_run=self.realtime and self.alice_kind == "model").start()
            if self.alice_kind == "rtl":
                self.alice_twin = Twin(Role.ALICE, slots=True).start()
                self.alice_url = self.alice_twin.url
            else:
                clock = None
                if self.realtime:
                    clock = (lambda: self.twin.clicks.seconds(tb.clk_hz)) if self.twin \
                        else time.monotonic
                self.alice_board = ModelBoard(role=Role.ALICE, clk_hz=tb.clk_hz,
                                              alice_options={"clock": clock})
                self.alice_server = ModelServer(self.alice_board).start()
                self._servers.append(self.alice_server)
                self.alice_url = self.alice_server.url
            if self.boards == "model":
                self.bob_board = ModelBoard(role=Role.BOB, clk_hz=tb.clk_hz,
                                            bob_options={"samples": tb.samples,
                                                         "baud": self.bob_baud,
                                                         "tagger": self.bob_tagger})
                self.bob_server = ModelServer(self.bob_board).start()
                self._servers.append(self.bob_server)
                bob = ModelBob(self.bob_board.bob)
                self.bob_url = self.bob_server.url
            else:
                bob = self.twin.clicks
                self.bob_url = self.twin.url
            self.fibre = Fibre(optics, tb, seed=self.seed, bob=bob, attenuator=self.bench.voa,
                               detector=detector, attack=self.attack)
            if self.alice_twin is not None:
                self.fibre.attach_twin(self.alice_twin.slots)
            else:
                self.fibre.attach(self.alice_board.alice)
            if self.realtime:
                self._thread = threading.Thread(target=self._pump_loop, name="testbed-fibre",
                                                daemon=True)
                self._thread.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        """Stop the pump, the boards and the instruments."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for server in self._servers:
            server.stop()
        self._servers.clear()
        for name in ("twin", "alice_twin"):
            twin = getattr(self, name)
            if twin is not None:
                twin.stop()
                setattr(self, name, None)
        bench = getattr(self, "bench", None)
        if bench is not None:
            bench.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- moving light -------------------------------------------------------------------------

    def _pump_loop(self):
        while not self._stop.wait(self.pump_interval):
            try:
                self.pump()
            except Exception as exc:          # keep serving; report on the next call
                self.error = exc
                raise

    def pump(self):
        """Let Alice catch up with her clock, and hand Bob every whole frame (everything once
        Alice is stopped)."""
        if self.alice_twin is not None:
            slots = self.alice_twin.slots
            slots.poll()
            running = slots.running
            if self.realtime:
                self._grant()
        else:
            alice = self.alice_board.alice
            with self.alice_board.lock:
                alice.catch_up()
                running = alice.running
        self.fibre.pump(self.stretch_frames)
        if not running:
            self.fibre.flush()
            self._light_stopped()
        if self.twin is not None:
            self.twin.clicks.check()

    def _grant(self):
        """Realtime, Alice's twin: let her play ``ahead_frames`` frames past what she has played
        while Bob's twin has at most one stretch waiting (a model Bob takes light at once)."""
        if self.twin is not None:
            clicks = self.twin.clicks
            clicks.check()
            if clicks.sent - clicks.played > 1:
                return
        slots = self.alice_twin.slots
        slots.grant(slots.played + self.ahead_frames * self.timebase.frame_slots)

    def advance(self, slots, *, wait=True):
        """Play ``slots`` more slots of Alice's run (``realtime=False``) and hand Bob the whole
        frames; with an RTL Bob, wait until his pins have played them."""
        if self.realtime:
            raise RuntimeError("advance() is for a testbed built with realtime=False; a realtime "
                               "testbed plays slots on its own clock")
        if self.alice_twin is not None:
            # her twin plays on simulated time: at least ``slots`` more (the host's own traffic
            # to her board takes simulated time too, and her run goes on meanwhile)
            twin_slots = self.alice_twin.slots
            twin_slots.poll()
            target = twin_slots.played + int(slots)
            twin_slots.grant(target)
            twin_slots.wait_played(target)
        else:
            with self.alice_board.lock:
                self.alice_board.alice.advance(int(slots))
        self.pump()
        if wait and self.twin is not None:
            self.twin.clicks.wait()

    def flush(self, *, wait=True):
        """Hand Bob all the light Alice played, the frame in progress included."""
        if self.alice_twin is not None:
            self.alice_twin.slots.poll()
        self.fibre.flush()
        self._light_stopped()
        if wait and self.twin is not None:
            self.twin.clicks.wait()

    def _light_stopped(self):
        """A model Bob's clock runs on past the light: his last frame ends with sync lost and
        his event FIFO empties (the twin's does by itself: each stretch ends with a gap)."""
        if self.boards == "model":
            self.bob_board.bob.idle()

    # -- what an operator needs ---------------------------------------------------------------

    @property
    def resources(self):
        """Return {instrument: VISA resource} (``TCPIP::127.0.0.1::PORT::SOCKET``, backend @py)."""
        return self.bench.resources

    def info(self):
        """Return the bench's URLs, resources and settings as plain data (``--json``)."""
        return {
            "boards": self.boards,
            "alice_board": self.alice_kind,
            "bob_board": self.boards,
            "alice_url": self.alice_url,
            "bob_url": self.bob_url,
            "visa": self.resources,
            "visa_backend": "@py",
            "preset": self.preset,
            "distance_km": self.distance_km,
            "channel_loss_db": self.fibre.model.channel_loss_db(),
            "seed": self.seed,
            "realtime": self.realtime,
            "timebase": self.timebase.as_dict() | {
                "photon_phase_bins": self.fibre.photon_phase_bins},
        }


def serve(boards="model", *, distance_km=25.0, preset="gys2005", seed=1, announce=print,
          timebase=None):
    """Run a realtime testbed until KeyboardInterrupt; ``announce(info)`` gets ``info()`` once
    everything listens."""
    with Testbed(boards, preset=preset, distance_km=distance_km, seed=seed, timebase=timebase,
                 realtime=True) as bed:
        announce(bed.info())
        try:
            while True:
                time.sleep(0.5)
                if bed.error is not None:
                    raise RuntimeError(f"the testbed's fibre stopped: {bed.error}")
        except KeyboardInterrupt:
            pass
