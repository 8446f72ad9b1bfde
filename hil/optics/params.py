"""Parameters of the simulated link: source, fibre, Bob's receiver, timing; published presets.

Every field carries its unit in its name or its doc. Detector indices are fixed by the receiver's
optics: 0 = Z0, 1 = Z1, 2 = X0, 3 = X1 (basis code 0 = Z, 1 = X, as in
``controller.postprocess.sift``); ``Receiver.channel_map`` says on which output channel each
detector is reported.

The presets take their published numbers from ``controller.postprocess.link_model`` (one copy of
each paper's figures in the project) and add what the papers leave open (timing, jitter, dead
time), marked as this project's choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from controller.postprocess.link_model import GYS2005, LIM2014, LinkParameters
from controller.postprocess.planning import DEFAULT_ASYMPTOTIC, DEFAULT_FINITE

N_DETECTORS = 4
DETECTOR_NAMES = ("Z0", "Z1", "X0", "X1")
SPEED_OF_LIGHT_M_PER_S = 299_792_458.0


def _four(value, name):
    values = tuple(float(v) for v in value) if hasattr(value, "__len__") else (float(value),) * 4
    if len(values) != N_DETECTORS:
        raise ValueError(f"{name} needs one value or {N_DETECTORS} (Z0, Z1, X0, X1), got {value!r}")
    return values


@dataclass(frozen=True)
class Source:
    """Alice's weak coherent source.

    intensities: mean photon number per pulse of each intensity class (class 0 = signal,
        1 = decoy, 2 = vacuum/weak decoy, ...), phase-randomised so photon numbers are Poisson.
    class_probabilities, p_z: how often each class and the Z basis are chosen, used only when the
        model draws Alice's choices itself (``IIDChoices``); explicit choice arrays ignore them.
    """

    intensities: tuple[float, ...] = (0.5, 0.1, 0.0)
    class_probabilities: tuple[float, ...] = (0.7, 0.2, 0.1)
    p_z: float = 0.5

    def __post_init__(self):
        if any(mu < 0 for mu in self.intensities):
            raise ValueError(f"intensities must be >= 0 photons per pulse, got {self.intensities}")
        if len(self.class_probabilities) != len(self.intensities):
            raise ValueError("class_probabilities needs one entry per intensity class")
        if abs(sum(self.class_probabilities) - 1.0) > 1e-9:
            raise ValueError(f"class_probabilities must sum to 1, got {self.class_probabilities}")
        if not 0.0 <= self.p_z <= 1.0:
            raise ValueError(f"p_z must be in [0, 1], got {self.p_z}")


@dataclass(frozen=True)
class Fibre:
    """The quantum channel between Alice and Bob (a VOA, if any, is added at run time).

    length_km: fibre length in km. alpha_db_per_km: attenuation in dB/km.
    insertion_loss_db: fixed extra loss in dB (connectors, filters).
    group_index: group index of the fibre (SMF-28 at 1550 nm: 1.4682), for the delay.
    """

    length_km: float = 25.0
    alpha_db_per_km: float = 0.2
    insertion_loss_db: float = 0.0
    group_index: float = 1.4682

    def loss_db(self) -> float:
        """Return the fixed loss of the fibre in dB (without any attenuator)."""
        return self.alpha_db_per_km * self.length_km + self.insertion_loss_db

    def delay_ps(self) -> float:
        """Return the propagation delay of the fibre in ps."""
        return self.length_km * 1e3 * self.group_index / SPEED_OF_LIGHT_M_PER_S * 1e12


@dataclass(frozen=True)
class Receiver:
    """Bob: passive basis splitter, two analysers, four threshold detectors.

    p_z: fraction of the light the passive splitter sends to the Z analyser (0.5 = 50:50).
    optics_efficiency: transmittance of Bob's optics before the detectors (0..1).
    efficiency: detection efficiency of each detector (one value or four), 0..1.
    misalignment: e_d, probability that a detected photon of a state prepared in the analyser's
        basis lands on the wrong detector of that analyser.
    dark_probability: dark count probability per gate (per slot) and detector; or give
        ``dark_rate_hz`` (per detector) and the gate width, and p = 1 - exp(-rate * gate).
    gate_width_ps: width of a detection gate in ps (free-running: ignored, the slot is the gate).
    gated: gated detectors (afterpulses fall into a later gate) or free-running.
    afterpulse_probability: total probability that a click is followed by an afterpulse.
    afterpulse_tau_ps: time constant of the exponential decay of the afterpulse probability,
        counted from the end of the dead time, in ps.
    dead_time_ps: non-paralysable dead time of each detector after a click, in ps.
    jitter_ps: RMS Gaussian timing jitter of a photon click, in ps.
    channel_delay_ps: extra delay of each detector's path and cable, in ps (four values).
    channel_map: output channel number of each detector (Z0, Z1, X0, X1).
    """

    p_z: float = 0.5
    optics_efficiency: float = 1.0
    efficiency: tuple[float, ...] | float = 0.1
    misalignment: float = 0.0
    dark_probability: tuple[float, ...] | float = 0.0
    dark_rate_hz: float | None = None
    gate_width_ps: float = 1000.0
    gated: bool = True
    afterpulse_probability: float = 0.0
    afterpulse_tau_ps: float = 1e6
    dead_time_ps: float = 0.0
    jitter_ps: float = 0.0
    channel_delay_ps: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    channel_map: tuple[int, ...] = (0, 1, 2, 3)

    def __post_init__(self):
        object.__setattr__(self, "efficiency", _four(self.efficiency, "efficiency"))
        object.__setattr__(self, "dark_probability", _four(self.dark_probability, "dark_probability"))
        object.__setattr__(self, "channel_delay_ps", _four(self.channel_delay_ps, "channel_delay_ps"))
        for name in ("p_z", "optics_efficiency", "misalignment", "afterpulse_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not all(0.0 <= e <= 1.0 for e in self.efficiency):
            raise ValueError(f"efficiency must be in [0, 1], got {self.efficiency}")
        if self.afterpulse_probability >= 1.0:
            raise ValueError("afterpulse_probability must be below 1 (cascades must end)")
        if sorted(self.channel_map) != list(range(N_DETECTORS)):
            raise ValueError(f"channel_map must be a permutation of 0..3, got {self.channel_map}")
        if min(self.dead_time_ps, self.jitter_ps, self.gate_width_ps, self.afterpulse_tau_ps) < 0:
            raise ValueError("dead time, jitter, gate width and afterpulse tau must be >= 0 ps")


@dataclass(frozen=True)
class Timing:
    """Slot and frame timing, all times in ps from the emission of slot 0 at Alice.

    slot_period_ps: time between two slots (pulses) in ps.
    slots_per_frame: a sync pulse marks the first slot of each frame.
    sync_offset_ps: delay of the sync signal at Bob relative to the photons of the same slot
        (beyond the common fibre delay), in ps. sync_jitter_ps: its RMS jitter in ps.
    """

    slot_period_ps: int = 10_000
    slots_per_frame: int = 1 << 16
    sync_offset_ps: float = 0.0
    sync_jitter_ps: float = 0.0

    def __post_init__(self):
        if self.slot_period_ps <= 0 or self.slots_per_frame <= 0:
            raise ValueError("slot_period_ps and slots_per_frame must be positive")


@dataclass(frozen=True)
class LinkConfig:
    """A whole link: source, fibre, receiver and timing."""

    source: Source = field(default_factory=Source)
    fibre: Fibre = field(default_factory=Fibre)
    receiver: Receiver = field(default_factory=Receiver)
    timing: Timing = field(default_factory=Timing)

    def with_(self, **changes) -> "LinkConfig":
        """Return a copy with some parts replaced; ``length_km=`` is a shortcut for the fibre."""
        if "length_km" in changes:
            changes["fibre"] = replace(changes.get("fibre", self.fibre),
                                       length_km=changes.pop("length_km"))
        return replace(self, **changes)


def from_link_parameters(params: LinkParameters, *, length_km: float = 25.0,
                         source: Source | None = None, p_z: float = 0.5) -> LinkConfig:
    """Return a LinkConfig built from a key-rate ``LinkParameters`` set.

    The papers' Bob has one overall efficiency ``eta_bob`` and a background ``y0`` per pulse over
    all of his detectors; here ``eta_bob`` is each detector's efficiency (optics lossless) and
    each of the four detectors gets ``y0 / 4``, so the no-click probability
    ``(1 - y0/4)**4 exp(-eta mu)`` equals the papers' ``(1 - y0) exp(-eta mu)`` to O(y0**2).
    """
    return LinkConfig(
        source=source or Source(),
        fibre=Fibre(length_km=length_km, alpha_db_per_km=params.alpha_db_per_km),
        receiver=Receiver(p_z=p_z, efficiency=params.eta_bob, misalignment=params.e_d,
                          dark_probability=params.y0 / N_DETECTORS,
                          afterpulse_probability=params.p_ap),
    )


def _lim_source():
    settings = DEFAULT_FINITE["two-decoy"]
    return Source(intensities=settings.intensities, class_probabilities=settings.probabilities,
                  p_z=settings.p_key)


def preset(name: str, *, length_km: float = 25.0) -> LinkConfig:
    """Return a published parameter set as a LinkConfig at ``length_km``.

    ``gys2005``: the GYS parameters (Gobby, Yuan, Shields, APL 84, 3762 (2004)) as used by Lo, Ma,
    Chen, PRL 94, 230504 (2005) and Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005): 0.21 dB/km,
    eta_Bob 4.5 %, Y0 1.7e-6, e_detector 3.3 % (1550 nm); symmetric bases (50:50 split). The
    intensities are the project's vacuum+weak planning defaults (signal 0.5, weak decoy 0.1,
    vacuum), chosen 0.7 / 0.2 / 0.1.

    ``lim2014``: Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), Sec. IV: 0.2 dB/km,
    eta_Bob 10 %, p_dc 6e-7 per detector (two detectors there: Y0 = 1.2e-6), after-pulse
    probability 4e-2, e_mis 5e-3, mu_3 = 2e-4; mu_1, mu_2 and the basis bias were optimised per
    distance in the paper, here fixed to the project's planning defaults (0.5, 0.1, 2e-4 with
    probabilities 0.7/0.2/0.1, Z with 0.9). Their Bob chooses the basis actively with two
    detectors; ours splits passively over four, each with Y0/4 (see ``from_link_parameters``).

    Neither paper gives timing, jitter or dead time: those stay at this project's defaults
    (``Timing()``, no jitter, no dead time; afterpulses decay with tau = 1 us).
    """
    if name == "gys2005":
        vw = DEFAULT_ASYMPTOTIC["vacuum-weak"]
        return from_link_parameters(GYS2005, length_km=length_km,
                                    source=Source((vw["mu"], vw["nu"], 0.0), (0.7, 0.2, 0.1), 0.5))
    if name == "lim2014":
        source = _lim_source()
        return from_link_parameters(LIM2014, length_km=length_km, source=source, p_z=source.p_z)
    raise ValueError(f"unknown optics preset {name!r}; expected 'gys2005' or 'lim2014'")


PRESETS = ("gys2005", "lim2014")
