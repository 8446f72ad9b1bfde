"""Eavesdroppers on the quantum channel: what each attack does to the pulses (models stated here).

All attacks act on a random ``fraction`` of the slots, chosen independently per slot; Eve sits
at Alice's output and owns the whole channel (fibre, insertion loss and attenuator); she never
touches Bob's receiver.

* ``InterceptResend``: Eve measures the attacked pulse with an ideal detector in a random basis
  (Z or X, 50:50). With no photon (probability e^-mu) she sends nothing. Otherwise she resends
  a weak coherent pulse of mean ``resend_mu`` in the state she measured (her bit is Alice's when
  the bases match, random otherwise). ``resend_mu=None``: she picks, per intensity class, the
  mean that keeps Bob's gain of that class unchanged (an oracle Eve who knows the class; it
  isolates the attack's signature to the QBER: 25 % on attacked pulses Alice and Bob measure in
  the same basis, plus e_d / 2, double clicks squashed to a random bit).
* ``BeamSplitting``: Eve replaces the channel by a lossless one and taps off exactly the
  channel's loss (1 - eta_ch) with a beam splitter, keeping the tapped photons until the bases
  are announced. Bob's statistics are unchanged; Eve knows the bit of a slot when she holds at
  least one photon of it (Poisson(mu (1 - eta_ch)), independent of Bob's photons).
* ``PhotonNumberSplitting``: Eve measures the photon number n without disturbing the
  polarisation. n = 1: she forwards the photon through the normal lossy channel with
  probability s1, else blocks it. n >= 2: with probability s_m she keeps one photon and sends the
  other n - 1 to Bob over a lossless channel (only Bob's own efficiency applies), else blocks.
  s1 and s_m are chosen so that Bob's gain at ``reference_mu`` (the signal intensity by
  default) equals the gain without Eve (s_m = 1 and s1 as needed when the lossless multi-photon
  part alone does not exceed it; else s1 = 0 and s_m < 1). Eve cannot tell the intensity
  classes apart, so the same s1, s_m apply to all of them: the decoy gains shift, which is what
  the decoy-state method detects. She knows the bit of every forwarded multi-photon pulse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EVE_NONE, EVE_KNOWS, EVE_TAP = 0, 1, 2


@dataclass(frozen=True)
class InterceptResend:
    """Intercept-resend on a fraction of the pulses (see the module docstring)."""

    fraction: float = 1.0
    resend_mu: float | None = None


@dataclass(frozen=True)
class BeamSplitting:
    """Beam-splitting attack: Eve taps the channel loss over a lossless channel."""

    fraction: float = 1.0


@dataclass(frozen=True)
class PhotonNumberSplitting:
    """Photon-number-splitting attack tuned to keep the gain at ``reference_mu`` unchanged."""

    fraction: float = 1.0
    reference_mu: float | None = None


Attack = InterceptResend | BeamSplitting | PhotonNumberSplitting


def check_attack(attack) -> None:
    """Raise ValueError if ``attack`` is not an attack or its fraction is outside [0, 1]."""
    if attack is None:
        return
    if not isinstance(attack, (InterceptResend, BeamSplitting, PhotonNumberSplitting)):
        raise ValueError(f"unknown attack {attack!r}; use InterceptResend, BeamSplitting or "
                         "PhotonNumberSplitting from hil.optics")
    if not 0.0 <= attack.fraction <= 1.0:
        raise ValueError(f"attack fraction must be in [0, 1], got {attack.fraction}")


def gain_matched_resend_mu(mu: float, eta: float) -> float:
    """Return the resend mean that keeps Bob's photon gain 1 - exp(-mu eta) under intercept-resend.

    Eve detects with probability 1 - e^-mu and resends mu_r: (1 - e^-mu)(1 - e^(-mu_r eta))
    = 1 - e^(-mu eta). Returns 0 for mu = 0 or eta = 0.
    """
    if mu <= 0.0 or eta <= 0.0:
        return 0.0
    ratio = -math.expm1(-mu * eta) / -math.expm1(-mu)
    if ratio >= 1.0:
        raise ValueError(f"intercept-resend cannot keep the gain at eta={eta:g}, mu={mu:g}")
    return -math.log1p(-ratio) / eta


def pns_strategy(mu: float, eta_channel: float, eta_bob: float, n_max: int) -> tuple[float, float]:
    """Return (s1, s_m): Eve's forwarding probabilities for 1 and >= 2 photons (gain kept at mu)."""
    target = -math.expm1(-mu * eta_channel * eta_bob)
    p = [math.exp(-mu)]
    for n in range(1, n_max + 1):
        p.append(p[-1] * mu / n)
    multi = sum(p[n] * (1.0 - (1.0 - eta_bob) ** (n - 1)) for n in range(2, n_max + 1))
    if multi >= target:
        return 0.0, (target / multi if multi > 0 else 0.0)
    single = p[1] * eta_channel * eta_bob
    return (min(1.0, (target - multi) / single) if single > 0 else 0.0), 1.0
