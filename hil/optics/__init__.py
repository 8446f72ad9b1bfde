"""Physics model of a decoy-state BB84 link: source, fibre, attenuator, Bob's detectors, Eve.

``OpticsModel(config, seed=...)`` turns Alice's per-slot choices into Bob's click times per
detector channel and the sync times, sampling only the slots that click. Parameters are in
``params`` (presets ``gys2005`` and ``lim2014``), eavesdroppers in ``eve``, the closed-form
per-slot physics in ``physics``, dead time and afterpulses in ``detectors``. See docs/optics.md.
"""

from .clicks import Clicks, RunResult
from .engine import (KIND_AFTERPULSE, KIND_DARK, KIND_PHOTON, FixedAttenuator, IIDChoices,
                     OpticsModel)
from .eve import BeamSplitting, InterceptResend, PhotonNumberSplitting
from .params import (DETECTOR_NAMES, PRESETS, Fibre, LinkConfig, Receiver, Source, Timing,
                     from_link_parameters, preset)

__all__ = ["OpticsModel", "Clicks", "RunResult", "FixedAttenuator", "IIDChoices",
           "KIND_PHOTON", "KIND_DARK", "KIND_AFTERPULSE", "InterceptResend", "BeamSplitting",
           "PhotonNumberSplitting", "LinkConfig", "Source", "Fibre", "Receiver", "Timing",
           "DETECTOR_NAMES", "PRESETS", "preset", "from_link_parameters"]
