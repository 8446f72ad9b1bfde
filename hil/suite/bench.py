"""What the HIL suite runs against: two boards, instruments and a way to send light.

``HilBench`` is the same API over three targets: ``model`` and ``rtl`` (a ``hil.testbed.Testbed``
started here, Alice's slots played on demand, so runs are exact and do not depend on the
machine's speed) and ``hw`` (real boards and instruments named by a bench file, slots played in
real time). Tests call ``bench.play(slots)`` and get a ``Run``: what Alice sent, what Bob
recorded and counted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from controller.alice import AliceFeeder, ChoiceSampler
from controller.device import Device
from controller.tagger import Records, Tagger, reconcile
from gateware.spec.modulator import SLOTS_PER_BYTE
from gateware.spec.tagger import CHANNELS
from hil.twin import BAUD

__all__ = ["HilBench", "Run", "SeededSource", "drain", "load_bench_file", "expected_click_probability"]

#: Per target: time base overrides and slots per measurement.
TARGETS = {
    "model": {"timebase": {}, "slots": 200_000, "distance_km": 25.0},
    # the twin simulates some 10^5 clock cycles a second: short slots, no fibre, fewer slots
    "rtl": {"timebase": {"slot_cycles": 8, "frame_slots": 256}, "slots": 30_000,
            "distance_km": 0.0},
    "hw": {"timebase": {}, "slots": 2_000_000},
}


class SeededSource:
    """Alice's randomness from a seeded numpy generator: reproducible test runs (never a key)."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.name = f"seeded({seed})"

    def read(self, n):
        """Return ``n`` pseudo-random bytes."""
        return self.rng.bytes(n)

    def close(self):
        """Nothing to close."""


def load_bench_file(path):
    """Return the bench description in ``path`` (TOML or JSON) as a dict."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    import tomllib
    return tomllib.loads(text)


@dataclass
class Run:
    """One measurement: ``sent`` (``SentRecord.slots()``), ``records`` (Bob's decoded EVENTS),
    ``counters`` (``Tagger.counters()``), ``hist`` (phase histograms), the run's first slot,
    the slot period and the attenuation it ran at."""

    sent: dict
    records: Records
    counters: dict
    hist: np.ndarray
    run_first: int
    frame_slots: int
    attenuation_db: float
    extra: dict = field(default_factory=dict)

    @property
    def slots(self) -> int:
        """Return the number of slots Alice played."""
        return int(self.sent["slot"].size)

    def alice_slots(self):
        """Return the Alice slot number of each of Bob's detections."""
        return self.run_first + self.records.frame * self.frame_slots + self.records.slot.astype(np.int64)

    def reconcile(self):
        """Return ``controller.tagger.reconcile`` of the counters and the records."""
        return reconcile(self.counters, self.records)

    def sifted(self, channel_map, shift=0):
        """Return ``(alice_bit, bob_bit, intensity)`` of single-click detections in Alice's basis
        on usable slots, Bob's slots moved by ``shift`` (0: aligned)."""
        slot = self.alice_slots() + shift
        index = slot - self.sent["slot"][0]
        ok = (index >= 0) & (index < self.slots)
        mask = self.records.mask.astype(np.int64)
        single = (mask & (mask - 1)) == 0
        ok &= single & (mask != 0)
        index, mask = index[ok], mask[ok]
        ch = np.log2(mask).astype(np.int64)
        cmap = np.asarray(channel_map)
        bob_basis, bob_bit = cmap[ch, 0], cmap[ch, 1]
        usable = self.sent["usable"][index]
        same = usable & (self.sent["basis"][index] == bob_basis)
        return (self.sent["bit"][index][same].astype(np.int64), bob_bit[same].astype(np.int64),
                self.sent["intensity"][index][same])


def expected_click_probability(optics_model, intensity):
    """Return per-slot probabilities that Bob's detectors click at all, for intensity classes
    ``intensity`` (array), at the model's current settings (VOA, detector)."""
    from hil.optics.physics import dark_probabilities
    cfg = optics_model.config
    r = cfg.receiver
    if optics_model.detector is not None:
        optics_model._apply_detector_settings()
        r = optics_model.config.receiver
    dark = dark_probabilities(r, optics_model.period_ps)
    transmittance = optics_model.channel_transmittance() * r.optics_efficiency
    eta = transmittance * np.asarray(r.efficiency)
    # a photon reaches one detector of the analyser its splitter chose (equal efficiencies
    # within an analyser: the routing of the bit does not matter)
    eta_total = r.p_z * eta[:2].mean() + (1 - r.p_z) * eta[2:].mean()
    mus = np.asarray(cfg.source.intensities)[np.asarray(intensity, dtype=np.int64)]
    no_photon = np.exp(-mus * float(eta_total))
    return 1.0 - np.prod(1.0 - dark) * no_photon


class HilBench:
    """Boards, instruments and the light, for one target.

    ``target``: ``model``, ``rtl`` or ``hw``. ``options``: for hw, ``alice_url``, ``bob_url``
    and the bench file's dict (``visa`` resources, ``timing``); for model/rtl, ``distance_km``
    and ``preset`` (defaults 25 km, gys2005), ``timebase`` (``TimeBase`` arguments over the
    target's), ``stretch_frames`` and ``bob_tagger`` (``Testbed``: the model Bob's
    ``TaggerParams``). ``seed`` seeds Alice's choices and the optics.
    """

    def __init__(self, target, *, seed=1, options=None):
        self.target = target
        self.seed = seed
        self.options = options or {}
        self.testbed = None
        self.slots = TARGETS[target]["slots"]

    # -- life cycle ---------------------------------------------------------------------------

    def start(self):
        """Start (model/rtl) or connect (hw); return self."""
        from controller.instruments import PhotonDetector, PowerMeter, VariableAttenuator
        from hil.fibre import TimeBase
        opts = self.options
        if self.target in ("model", "rtl"):
            from hil.testbed import Testbed
            tb = TimeBase(**{**TARGETS[self.target]["timebase"], **opts.get("timebase", {})})
            self.testbed = Testbed(self.target, preset=opts.get("preset", "gys2005"),
                                   distance_km=opts.get("distance_km",
                                                        TARGETS[self.target]["distance_km"]),
                                   timebase=tb, stretch_frames=opts.get("stretch_frames"),
                                   # the model Bob's link: the twin's UART rate (both overflow
                                   # alike)
                                   bob_baud=BAUD, bob_tagger=opts.get("bob_tagger"),
                                   # rtl: Bob's twin with the behavioural Alice by default. Her
                                   # twin works (tests/rtl/test_alice_twin.py) but at these
                                   # 8-cycle slots her UART-fed FIFO underflows and the suite
                                   # takes ~4x longer; options={"alice": "rtl"} runs both twins.
                                   alice=opts.get("alice", "model"),
                                   seed=self.seed, realtime=False).start()
            alice_url, bob_url = self.testbed.alice_url, self.testbed.bob_url
            visa, backend = self.testbed.resources, "@py"
            self.timebase = tb
        else:
            alice_url, bob_url = opts["alice_url"], opts["bob_url"]
            visa = dict(opts.get("visa", {}))
            backend = visa.pop("backend", "@py")
        # the RTL twin answers at simulated speed: a long frame takes seconds on a busy host
        timeout = 15.0 if self.target == "rtl" else 2.0
        self.alice = Device(alice_url, timeout=timeout)
        self.bob = Device(bob_url, timeout=timeout)
        self.tagger = Tagger(self.bob)
        if self.target == "hw":
            timing = opts.get("timing", {})
            self.timebase = TimeBase(clk_hz=self.alice.read("core.clk_hz"),
                                     slot_cycles=timing.get("slot_cycles", 48),
                                     frame_slots=timing.get("frame_slots", 1024),
                                     samples=self.tagger.samples)
        self.voa = VariableAttenuator(visa["voa"], backend=backend) if "voa" in visa else None
        self.powermeter = PowerMeter(visa["powermeter"], backend=backend) \
            if "powermeter" in visa else None
        self.detector = PhotonDetector(visa["detector"], backend=backend) \
            if "detector" in visa else None
        self.sync_delay = int(opts.get("timing", {}).get("sync_delay", 0))
        return self

    def stop(self):
        """Close everything this bench opened."""
        for name in ("alice", "bob", "voa", "powermeter", "detector"):
            obj = getattr(self, name, None)
            if obj is not None:
                try:
                    obj.close()
                except Exception:
                    pass
        if self.testbed is not None:
            self.testbed.stop()

    @property
    def simulated(self) -> bool:
        """Return True on model and rtl (the physics behind the bench is known exactly)."""
        return self.testbed is not None

    # -- settings -----------------------------------------------------------------------------

    def set_attenuation(self, db):
        """Set the VOA over VISA to ``db`` (and wait for it)."""
        self.voa.attenuation_db = db
        self.voa.output_enabled = True
        self.voa.wait()

    def configure_bob(self, **overrides):
        """Configure Bob's tagger for the time base (gate open, no dead time unless given)."""
        settings = self.timebase.bob_settings(sync_delay=self.sync_delay)
        settings.update(overrides)
        self.tagger.stop()
        self.tagger.configure(**settings)
        self.channel_map = settings["channel_map"]
        return settings

    # -- light --------------------------------------------------------------------------------

    def play(self, slots=None, *, seed=None, sampler=None):
        """Run Alice for ``slots`` slots (default: the target's measurement size) with Bob's
        tagger cleared and enabled; return a Run."""
        slots = int(slots or self.slots)
        seed = self.seed if seed is None else seed
        sampler = sampler or ChoiceSampler(p_x=0.5, p_signal=0.7, p_decoy=0.2, p_vacuum=0.1)
        feeder = AliceFeeder(self.alice, sampler, SeededSource(seed),
                             **self.timebase.alice_settings())
        feeder.configure()
        self.tagger.clear()
        self.tagger.start()
        att = self.voa.attenuation_db if self.voa is not None else float("nan")
        if self.testbed is not None:
            self.testbed.pump()                      # anything left from before: delivered now
            feeder.start()
            step = feeder.depth * SLOTS_PER_BYTE - 64
            done = 1                                 # the run's first slot plays at start
            while done < slots:
                n = min(step, slots - done)
                self.testbed.advance(n, wait=False)
                done += n
                feeder.pump()
            feeder.stop()
            self.testbed.flush()          # a model Bob's clock runs on: his last frame ends
        else:
            feeder.run(slots / self.timebase.slot_hz)
        records, counters = self._drain()
        self.tagger.stop()
        sent = feeder.record.slots()
        run_first = int(feeder.record.runs[-1][0])
        return Run(sent, records, counters, self.tagger.histograms(), run_first,
                   self.timebase.frame_slots, att)

    def _drain(self, timeout=60.0):
        """Read EVENTS until the tagger's counters and the records agree (see :func:`drain`)."""
        return drain(self.tagger, timeout)


def drain(tagger, timeout=60.0):
    """Read EVENTS until ``tagger``'s counters and the records received agree (events = records
    + dropped, event FIFO empty, nothing more arriving), or ``timeout`` s; return (records,
    counters)."""
    parts = []
    deadline = time.monotonic() + timeout
    counters = None
    while time.monotonic() < deadline:
        parts.append(tagger.read_records(timeout=0.05))
        counters = tagger.counters()
        got = sum(len(p) for p in parts)
        if counters["events"] == got + counters["dropped_events"] \
                and tagger.device.fields("tagger.status")["fifo_bytes"] == 0:
            parts.append(tagger.read_records(timeout=0.05))
            if sum(len(p) for p in parts) == got:
                break
    return Records.concat(parts), counters


def channel_counts(records):
    """Return detections per channel (a detection with several channels counts in each)."""
    mask = records.mask.astype(np.int64)
    return np.array([int(np.count_nonzero(mask & (1 << ch))) for ch in range(CHANNELS)])
