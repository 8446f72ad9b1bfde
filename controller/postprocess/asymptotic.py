"""Asymptotic (infinite-key) decoy-state BB84 key rates per pulse, for planning.

Rate formula of GLLP with decoy estimates (Lo, Ma, Chen, PRL 94, 230504 (2005), Eq. 1;
Ma, Qi, Zhao, Lo, PRA 72, 012326 (2005), Eq. 1):

    R = q * ( Q1 * (1 - h(e1)) - f * Q_mu * h(E_mu) )      [bits per pulse]

where ``q`` is the sifting factor, ``Q1``/``e1`` the single-photon gain/error rate.
Variants of how ``Q1``/``e1`` are obtained:

* ``infinite``: exact values (the infinite-decoy limit);
* ``vacuum-weak``: lower/upper bounds from one vacuum and one weak decoy
  ``nu`` (Ma et al. 2005, Eqs. 34 and 37);
* ``none``: no decoy, GLLP with the worst-case multi-photon fraction
  ``Delta = (1 - (1 + mu) e^-mu) / Q_mu`` (GLLP, Quantum Inf. Comput. 4, 325 (2004)).
"""

from __future__ import annotations

import math

from .infotheory import h2
from .link_model import LinkParameters, error_probability, gain


def _h(x: float) -> float:
    return 1.0 if x >= 0.5 else h2(max(x, 0.0))


def _signal_terms(params: LinkParameters, eta: float, mu: float) -> tuple[float, float]:
    q_mu = float(gain(params, eta, mu))
    e_mu = float(error_probability(params, eta, mu)) / q_mu
    return q_mu, e_mu


def rate_infinite_decoy(params: LinkParameters, distance_km: float, mu: float) -> float:
    """Return the infinite-decoy key rate in bits per pulse (may be negative)."""
    eta = params.transmittance(distance_km)
    q_mu, e_mu = _signal_terms(params, eta, mu)
    y1 = params.y0 + eta - params.y0 * eta
    e1 = (params.y0 / 2.0 + params.e_d * eta) / y1
    q1 = y1 * mu * math.exp(-mu)
    return params.sift_factor * (q1 * (1.0 - _h(e1)) - params.f_ec * q_mu * _h(e_mu))


def rate_vacuum_weak(params: LinkParameters, distance_km: float, mu: float, nu: float) -> float:
    """Return the vacuum+weak-decoy key rate in bits per pulse (needs 0 < nu < mu)."""
    if not 0.0 < nu < mu:
        raise ValueError(f"vacuum+weak decoy needs 0 < nu < mu, got mu={mu}, nu={nu}")
    eta = params.transmittance(distance_km)
    q_mu, e_mu = _signal_terms(params, eta, mu)
    q_nu, e_nu = _signal_terms(params, eta, nu)
    y0 = params.y0
    y1_l = (mu / (mu * nu - nu * nu)) * (
        q_nu * math.exp(nu) - q_mu * math.exp(mu) * nu * nu / (mu * mu)
        - (mu * mu - nu * nu) / (mu * mu) * y0)
    if y1_l <= 0.0:
        return -params.sift_factor * params.f_ec * q_mu * _h(e_mu)
    e1_u = (e_nu * q_nu * math.exp(nu) - y0 / 2.0) / (y1_l * nu)
    q1_l = y1_l * mu * math.exp(-mu)
    return params.sift_factor * (q1_l * (1.0 - _h(e1_u)) - params.f_ec * q_mu * _h(e_mu))


def rate_no_decoy(params: LinkParameters, distance_km: float, mu: float) -> float:
    """Return the GLLP key rate without decoys in bits per pulse (may be negative)."""
    eta = params.transmittance(distance_km)
    q_mu, e_mu = _signal_terms(params, eta, mu)
    delta = (1.0 - (1.0 + mu) * math.exp(-mu)) / q_mu
    if delta >= 1.0:
        return -params.sift_factor * params.f_ec * q_mu * _h(e_mu)
    good = q_mu * (1.0 - delta)
    return params.sift_factor * (good * (1.0 - _h(e_mu / (1.0 - delta)))
                                 - params.f_ec * q_mu * _h(e_mu))
