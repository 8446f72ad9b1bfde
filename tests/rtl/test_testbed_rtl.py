"""The RTL twin of Bob in the simulated bench: the fibre drives its detector pins, and the same
stretches go to a behavioural Bob; the two send the same EVENTS bytes, counters and histograms
(the tagger issue's scoreboard, reused on the optics model's light)."""


import numpy as np
import pytest

from controller.alice import AliceFeeder, ChoiceSampler
from controller.device import Device
from controller.tagger import Tagger
from gateware.spec.registers import Role
from hil.fibre import ModelBob, TimeBase
from hil.model import ModelBoard, ModelServer
from hil.suite.bench import SeededSource, drain
from hil.testbed import Testbed

pytestmark = pytest.mark.cocotb

SEED = 20261127


class Tee:
    """Hand every stretch to several Bobs."""

    def __init__(self, *bobs):
        self.bobs = bobs

    def deliver(self, stretch):
        for bob in self.bobs:
            bob.deliver(stretch)


def test_twin_and_model_tag_the_same_light():
    tb = TimeBase(slot_cycles=8, frame_slots=128)
    model_bob = ModelBoard(role=Role.BOB, bob_options={"samples": tb.samples})
    with Testbed("rtl", alice="model", timebase=tb, realtime=False, distance_km=0.0,
                 seed=SEED) as bed, \
            ModelServer(model_bob) as server:
        model_bob.bob.gap_bins = bed.twin.clicks.gap_bins    # each stretch a run, as on the twin
        bed.fibre.bob = Tee(bed.twin.clicks, ModelBob(model_bob.bob))
        taggers = [Tagger(Device(url, timeout=2.0)) for url in (bed.bob_url, server.url)]
        for tagger in taggers:
            # a gate and dead times that reject some clicks, so every counter is exercised
            tagger.configure(**tb.bob_settings(gate_start=2, gate_width=tb.slot_bins - 4,
                                               dead_time=[0, 40, 200, 7]))
            tagger.clear()
            tagger.start()
        with Device(bed.alice_url) as alice:
            feeder = AliceFeeder(alice, ChoiceSampler(0.5, 0.7, 0.2, 0.1), SeededSource(SEED),
                                 **tb.alice_settings())
            feeder.start()
            for _ in range(3):
                bed.advance(6000, wait=False)
                feeder.pump()
            feeder.stop()
        bed.flush()
        (rtl, rtl_counters), (model, model_counters) = (drain(t, timeout=120.0) for t in taggers)
        assert bed.fibre.stats["clicks"] > 200, bed.fibre.stats
        assert rtl_counters == model_counters, f"seed {SEED}"
        assert rtl.words == model.words and len(rtl) == len(model) > 100
        for name in ("frame", "slot", "mask", "phase"):
            assert np.array_equal(getattr(rtl, name), getattr(model, name)), f"{name}, seed {SEED}"
        assert np.array_equal(rtl.markers, model.markers)
        assert np.array_equal(taggers[0].histograms(), taggers[1].histograms())
        assert sum(rtl_counters["dead"]) > 0, "the dead times rejected nothing"
