"""Closed-form per-slot physics: what reaches each detector, as a table the sampler draws from.

A slot's *type* is (intensity class c, Alice's basis b, Alice's bit v), index ``4 c + 2 b + v``.
Each type is a mixture of *components* (no attack, or one branch of an attack). A component
gives the distribution of K, the number of photons Bob detects (after every loss and the
detector efficiencies), and the routing of each detected photon to detectors Z0, Z1, X0, X1.
Photons are routed independently, so a Poisson K with routing r is the same as independent
Poisson counts per detector, i.e. exactly the phase-randomised coherent-state statistics.

Per detector d and a state prepared in basis s with bit u, a photon that reaches Bob lands on d
with probability ``eta_opt * split(d) * P(d | s, u) * eff(d)``: ``split`` is p_z for the Z
detectors and 1 - p_z for the X ones; in the matching basis ``P`` is 1 - e_d on the right
detector and e_d on the other; in the other basis 1/2 each. Dark counts are independent per
detector and gate. The probability that a slot of a component produces no click at all is
``pmf_K(0) * prod_d (1 - p_dark(d))``: that is what lets the sampler skip empty slots.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .eve import (EVE_KNOWS, EVE_NONE, EVE_TAP, BeamSplitting, InterceptResend,
                  PhotonNumberSplitting, gain_matched_resend_mu, pns_strategy)
from .params import N_DETECTORS, Receiver

_POISSON_TAIL_SIGMAS = 14.0


def detector_weights(receiver: Receiver, basis: int, bit: int) -> np.ndarray:
    """Return, per detector, the probability that a photon of state (basis, bit) at Bob is detected there."""
    split = np.array([receiver.p_z, receiver.p_z, 1 - receiver.p_z, 1 - receiver.p_z])
    hit = np.empty(N_DETECTORS)
    for d in range(N_DETECTORS):
        d_basis, d_bit = divmod(d, 2)
        if d_basis == basis:
            hit[d] = 1 - receiver.misalignment if d_bit == bit else receiver.misalignment
        else:
            hit[d] = 0.5
    return receiver.optics_efficiency * split * hit * np.asarray(receiver.efficiency)


def dark_probabilities(receiver: Receiver, period_ps: float) -> np.ndarray:
    """Return the dark count probability per slot of each detector."""
    if receiver.dark_rate_hz is None:
        return np.asarray(receiver.dark_probability, dtype=float)
    gate_s = (receiver.gate_width_ps if receiver.gated else period_ps) * 1e-12
    return np.full(N_DETECTORS, -math.expm1(-receiver.dark_rate_hz * gate_s))


def _k_max(mean: float) -> int:
    return int(mean + _POISSON_TAIL_SIGMAS * math.sqrt(mean) + 20)


def poisson_pmf(lam: float, k_max: int) -> np.ndarray:
    """Return P(K = k) for k = 0..k_max of a Poisson(lam) law."""
    k = np.arange(k_max + 1)
    if lam <= 0:
        return (k == 0).astype(float)
    logp = k * math.log(lam) - lam - np.array([math.lgamma(i + 1) for i in k])
    return np.exp(logp)


def binomial_mixture_pmf(weights: np.ndarray, trials: np.ndarray, p: float, k_max: int) -> np.ndarray:
    """Return the pmf of K ~ Binomial(n, p) with n drawn from ``weights`` over ``trials``."""
    from scipy.stats import binom
    k = np.arange(k_max + 1)
    return np.sum(weights[:, None] * binom.pmf(k[None, :], trials[:, None], p), axis=0)


@dataclass
class SlotTable:
    """Components of every slot type, flattened, plus per-type click probabilities.

    comp_type, comp_weight: type index and mixture weight of each component.
    comp_pmf: (n_comp, k_max + 1) distribution of the detected photon number K.
    comp_route: (n_comp, 4) routing of a detected photon to the detectors (rows sum to 1).
    comp_eve: EVE_NONE, EVE_KNOWS or EVE_TAP per component. comp_tap_mu: Eve's tap mean.
    dark: (4,) dark probability per slot. p_click: (n_types,) P(at least one click).
    """

    comp_type: np.ndarray
    comp_weight: np.ndarray
    comp_pmf: np.ndarray
    comp_route: np.ndarray
    comp_eve: np.ndarray
    comp_tap_mu: np.ndarray
    dark: np.ndarray
    p_click: np.ndarray

    @property
    def no_dark(self) -> float:
        """Return the probability that no detector has a dark count in a slot."""
        return float(np.prod(1.0 - self.dark))

    def comp_click(self) -> np.ndarray:
        """Return, per component, P(at least one click)."""
        return 1.0 - self.comp_pmf[:, 0] * self.no_dark


def build_table(intensities, receiver: Receiver, eta_channel: float, dark: np.ndarray,
                attack=None) -> SlotTable:
    """Return the SlotTable of a link with channel transmittance ``eta_channel`` (0..1)."""
    intensities = [float(mu) for mu in intensities]
    weights_of = {(b, v): detector_weights(receiver, b, v) for b in (0, 1) for v in (0, 1)}
    eta_bob_avg = float(np.mean([w.sum() for w in weights_of.values()]))
    mu_top = max(intensities + [0.0] + ([attack.resend_mu] if isinstance(attack, InterceptResend)
                                         and attack.resend_mu else []))
    k_max = _k_max(mu_top * 3 + 1)
    n_max = _k_max(mu_top)
    frac = attack.fraction if attack is not None else 0.0
    pns = None
    if isinstance(attack, PhotonNumberSplitting):
        ref = attack.reference_mu if attack.reference_mu is not None else intensities[0]
        pns = pns_strategy(ref, eta_channel, eta_bob_avg, n_max)
    rows = []   # (type, weight, pmf, route, eve, tap_mu)

    def add(t, w, pmf, route_w, eve=EVE_NONE, tap_mu=0.0):
        if w <= 0:
            return
        total = route_w.sum()
        route = route_w / total if total > 0 else np.full(N_DETECTORS, 0.25)
        rows.append((t, w, pmf, route, eve, tap_mu))

    for c, mu in enumerate(intensities):
        for b in (0, 1):
            for v in (0, 1):
                t = 4 * c + 2 * b + v
                w_a = weights_of[(b, v)]
                lam = mu * eta_channel * w_a.sum()
                normal = poisson_pmf(lam, k_max)
                if isinstance(attack, BeamSplitting):
                    add(t, 1 - frac, normal, w_a)
                    add(t, frac, normal, w_a, EVE_TAP, mu * (1 - eta_channel))
                elif isinstance(attack, InterceptResend):
                    add(t, 1 - frac, normal, w_a)
                    p_eve = -math.expm1(-mu)
                    for eb in (0, 1):
                        for ev in (0, 1):
                            if eb == b and ev != v:
                                continue
                            w_e = weights_of[(eb, ev)]
                            share = 0.5 if eb == b else 0.25
                            if attack.resend_mu is None:
                                mu_r = gain_matched_resend_mu(mu, eta_channel * w_e.sum())
                            else:
                                mu_r = attack.resend_mu
                            pmf = p_eve * poisson_pmf(mu_r * eta_channel * w_e.sum(), k_max)
                            pmf[0] += 1 - p_eve
                            add(t, frac * share, pmf, w_e, EVE_KNOWS if eb == b else EVE_NONE)
                elif pns is not None:
                    s1, s_m = pns
                    add(t, 1 - frac, normal, w_a)
                    p0, p1 = math.exp(-mu), mu * math.exp(-mu)
                    p_multi = max(0.0, 1.0 - p0 - p1)
                    eta_b = w_a.sum()
                    add(t, frac * p1 * s1, poisson_pmf(0, k_max) * (1 - eta_channel * eta_b)
                        + np.eye(k_max + 1)[1] * eta_channel * eta_b, w_a)
                    if p_multi > 0:
                        n = np.arange(2, n_max + 1)
                        pn = poisson_pmf(mu, n_max)[2:]
                        add(t, frac * p_multi * s_m,
                            binomial_mixture_pmf(pn / pn.sum(), n - 1, eta_b, k_max), w_a, EVE_KNOWS)
                    blocked = frac * (p0 + p1 * (1 - s1) + p_multi * (1 - s_m))
                    add(t, blocked, poisson_pmf(0, k_max), w_a)
                else:
                    add(t, 1.0, normal, w_a)
    n_types = 4 * len(intensities)
    comp_type = np.array([r[0] for r in rows], dtype=np.int64)
    comp_weight = np.array([r[1] for r in rows])
    comp_pmf = np.array([r[2] for r in rows])
    comp_pmf /= comp_pmf.sum(axis=1, keepdims=True)   # drop the truncated tail (< 1e-30)
    table = SlotTable(comp_type, comp_weight, comp_pmf, np.array([r[3] for r in rows]),
                      np.array([r[4] for r in rows], dtype=np.int8),
                      np.array([r[5] for r in rows]), np.asarray(dark, dtype=float),
                      np.zeros(n_types))
    np.add.at(table.p_click, comp_type, comp_weight * table.comp_click())
    return table
