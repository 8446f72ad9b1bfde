"""Expected detection statistics of a weak-coherent-pulse BB84 link, for planning.

The model is the one used by the decoy-state literature for simulations:
channel transmittance ``eta = eta_bob * 10**(-alpha * L / 10)``; a pulse of mean
photon number ``mu`` is detected with probability
``D(mu) = 1 - (1 - y0) * exp(-eta * mu)`` (``y0`` = background/dark-count
probability per pulse over all of Bob's detectors) and counted with after-pulses as
``R(mu) = D(mu) * (1 + p_ap)``; it is detected in error with probability
``E(mu) = y0 / 2 + e_d * (1 - exp(-eta * mu)) + p_ap * D(mu) / 2``.

Sources: Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005), Eqs. (7)-(9) for gain and error
(no after-pulses), and Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014),
simulation section, for the after-pulse terms (``y0 = 2 p_dc`` there, two detectors).

Where the after-pulses land (``afterpulse_slots``): Lim et al.'s formulas above count a pulse's
after-pulses in its own slot (``"same"``, the default, which reproduces their figures).  A real
gated or free-running detector fires them in *later* slots (``"later"``: the afterpulse time
constant is not below the slot period, as in the project's optics model), whose intensity class,
basis and bit Alice chose independently: every slot then gets ``p_ap / (1 - p_ap) * D_mean``
extra counts (after-pulses of after-pulses included; ``D_mean`` the click probability averaged
over the classes), half of them errors, whatever its own intensity -- see :func:`class_rates`.
The vacuum class's yield then carries most of the after-pulse counts and the signal class's
error rate drops, which is what a run measures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class LinkParameters:
    """Physical and protocol parameters of a link (units in each field name or doc).

    alpha_db_per_km: fibre attenuation in dB/km.
    eta_bob: Bob's overall detection efficiency (optics x detector), 0..1.
    y0: background (dark count) detection probability per pulse, all detectors.
    e_d: misalignment (optical) error probability of a detected photon.
    f_ec: error-correction inefficiency (leak = f_ec * n * h(QBER)).
    p_ap: after-pulse probability per detection.
    sift_factor: fraction of detections kept by sifting in the asymptotic rate
        (1/2 for symmetric BB84 as in GLLP/Lo-Ma-Chen; ~1 for efficient BB84).
    eps_sec, eps_cor: secrecy and correctness parameters for finite-key bounds.
    """

    alpha_db_per_km: float
    eta_bob: float
    y0: float
    e_d: float
    f_ec: float
    p_ap: float = 0.0
    sift_factor: float = 0.5
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    afterpulse_slots: str = "same"

    def __post_init__(self):
        if self.afterpulse_slots not in ("same", "later"):
            raise ValueError(f"afterpulse_slots must be 'same' or 'later', got "
                             f"{self.afterpulse_slots!r}")
        if not 0.0 <= self.p_ap < 1.0:
            raise ValueError(f"p_ap must be in [0, 1), got {self.p_ap}")

    def transmittance(self, distance_km: float) -> float:
        """Return the overall transmittance (fibre x Bob) at ``distance_km``."""
        return self.eta_bob * 10.0 ** (-self.alpha_db_per_km * distance_km / 10.0)

    def with_(self, **changes) -> "LinkParameters":
        """Return a copy with some fields changed."""
        return replace(self, **changes)


# GYS: Gobby, Yuan, Shields, APL 84, 3762 (2004), as used for the decoy-state rates
# of Lo, Ma, Chen, PRL 94, 230504 (2005) and Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005),
# Table I: alpha = 0.21 dB/km, eta_Bob = 4.5 %, Y0 = 1.7e-6, e_detector = 3.3 %,
# f(e) = 1.22; symmetric BB84, sifting factor q = 1/2.
GYS2005 = LinkParameters(alpha_db_per_km=0.21, eta_bob=0.045, y0=1.7e-6, e_d=0.033,
                         f_ec=1.22, p_ap=0.0, sift_factor=0.5)

# Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014), simulation parameters:
# alpha = 0.2 dB/km, eta_Bob = 10 %, p_dc = 6e-7 per detector (y0 = 2 p_dc),
# e_mis = 0.5 %, f_EC = 1.16, eps_sec = 1e-10, eps_cor = 1e-15, after-pulse
# probability p_ap = 4e-2.  p_ap = 4 % (not 0.1 %) is what reproduces both of their
# Fig. 1 figures (R(n_X=1e9)/R(n_X=1e7) ~ 1.75 at 100 km; key to ~135 km at
# n_X = 1e4, the latter only when the key-basis probability may drop below 1/2);
# with p_ap = 0 the ratio is 1.61 (tests/postprocess/test_planning.py).
LIM2014 = LinkParameters(alpha_db_per_km=0.2, eta_bob=0.10, y0=1.2e-6, e_d=0.005,
                         f_ec=1.16, p_ap=0.04, sift_factor=1.0,
                         eps_sec=1e-10, eps_cor=1e-15)

PRESETS: dict[str, LinkParameters] = {"gys2005": GYS2005, "lim2014": LIM2014}


def preset(name: str) -> LinkParameters:
    """Return the named parameter preset (``gys2005`` or ``lim2014``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None


def detection_probability(params: LinkParameters, eta: float, mu):
    """Return D(mu): probability that a pulse of mean photon number ``mu`` clicks."""
    mu = np.asarray(mu, dtype=float)
    return 1.0 - (1.0 - params.y0) * np.exp(-eta * mu)


def gain(params: LinkParameters, eta: float, mu):
    """Return R(mu): expected counts per pulse including after-pulses."""
    return detection_probability(params, eta, mu) * (1.0 + params.p_ap)


def error_probability(params: LinkParameters, eta: float, mu):
    """Return E(mu): expected erroneous counts per pulse (error rate = E / R)."""
    mu = np.asarray(mu, dtype=float)
    d = detection_probability(params, eta, mu)
    return params.y0 / 2.0 + params.e_d * (1.0 - np.exp(-eta * mu)) + params.p_ap * d / 2.0


def class_rates(params: LinkParameters, eta: float, mus, probabilities):
    """Return (R, E) per intensity class: counts and erroneous counts per pulse of that class.

    ``afterpulse_slots == "same"``: :func:`gain` and :func:`error_probability`.  ``"later"``:
    ``R_k = D(mu_k) + A``, ``E_k = y0/2 + e_d (1 - exp(-eta mu_k)) + A/2`` with
    ``A = p_ap / (1 - p_ap) * sum_j p_j D(mu_j)`` (see the module doc).
    """
    mus = np.asarray(mus, dtype=float)
    if params.afterpulse_slots == "same":
        return gain(params, eta, mus), error_probability(params, eta, mus)
    ps = np.asarray(probabilities, dtype=float)
    d = detection_probability(params, eta, mus)
    extra = params.p_ap / (1.0 - params.p_ap) * float(np.sum(ps * d))
    e = params.y0 / 2.0 + params.e_d * (1.0 - np.exp(-eta * mus)) + extra / 2.0
    return d + extra, e
