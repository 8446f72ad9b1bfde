"""Alice's RTL twin as the light source: her gateware's pins, read by the slot monitor, drive the
fibre (``Fibre.attach_twin``) into Bob's RTL twin. The host's record of the choices Alice sent
(her REPORTS) must match Bob's decoded events slot for slot."""

from dataclasses import replace

import numpy as np
import pytest

from controller.alice import AliceFeeder, ChoiceSampler
from controller.device import Device
from controller.tagger import Tagger, reconcile
from gateware.spec.modulator import Intensity
from hil.fibre import TimeBase
from hil.optics import preset
from hil.suite.bench import Run, SeededSource, drain
from hil.testbed import Testbed

pytestmark = pytest.mark.cocotb

SEED = 20261128


def _clean_optics():
    """No misalignment, no dark counts, efficient detectors: a detection in Alice's basis
    carries her bit without error, and only a slot whose laser fired can click."""
    cfg = preset("gys2005", length_km=0.0)
    receiver = replace(cfg.receiver, misalignment=0.0, dark_probability=(0.0,) * 4,
                       efficiency=(0.5,) * 4)
    return cfg.with_(receiver=receiver)


def test_alice_twin_light_matches_bob_twin_events():
    tb = TimeBase(slot_cycles=24, frame_slots=128)
    with Testbed("rtl", timebase=tb, realtime=False, seed=SEED, optics=_clean_optics(),
                 link_detector=False) as bed:
        assert bed.alice_twin is not None and bed.twin is not None
        tagger = Tagger(Device(bed.bob_url, timeout=15.0))
        tagger.configure(**tb.bob_settings())
        tagger.clear()
        tagger.start()
        with Device(bed.alice_url, timeout=15.0) as alice:
            feeder = AliceFeeder(alice, ChoiceSampler(0.5, 0.7, 0.2, 0.1), SeededSource(SEED),
                                 **tb.alice_settings())
            feeder.start()
            for _ in range(2):
                bed.advance(6000, wait=False)
                feeder.pump()
            feeder.stop()
        bed.flush()
        records, counters = drain(tagger, timeout=120.0)
        fibre = dict(bed.fibre.stats)
    sent = feeder.record.slots()
    run_first = int(feeder.record.runs[-1][0])
    run = Run(sent, records, counters, np.zeros(0), run_first, tb.frame_slots, 0.0)
    assert reconcile(counters, records).ok, f"seed {SEED}: {counters}"
    # every slot Alice's host recorded went through the fibre, and only those
    assert fibre["slots"] == run.slots, f"fibre {fibre}, record {run.slots} slots (seed {SEED})"
    assert len(records) > 200, f"only {len(records)} detections (seed {SEED}, {fibre})"
    slots = run.alice_slots()
    index = slots - sent["slot"][0]
    assert index.min() >= 0 and index.max() < run.slots, f"seed {SEED}"
    # no dark counts: every detection is on a slot whose laser fired
    assert np.all(sent["intensity"][index] != Intensity.VACUUM.value), f"seed {SEED}"
    # no misalignment: Alice's bit wherever Bob measured in her basis
    alice_bits, bob_bits, _ = run.sifted(tb.bob_settings()["channel_map"])
    assert alice_bits.size > 50, f"{alice_bits.size} sifted bits (seed {SEED})"
    errors = int(np.count_nonzero(alice_bits != bob_bits))
    assert errors == 0, f"{errors} of {alice_bits.size} sifted bits differ (seed {SEED})"
    # one slot off, the bits are unrelated
    a, b, _ = run.sifted(tb.bob_settings()["channel_map"], shift=1)
    q = np.count_nonzero(a != b) / a.size
    assert abs(q - 0.5) < 5 * np.sqrt(0.25 / a.size), f"shifted QBER {q:.3f} (seed {SEED})"
