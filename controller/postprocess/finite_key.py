"""Finite-key secret key length for decoy-state BB84 with biased bases.

Two bounds, both against general (coherent) attacks, composable:

* ``two-decoy``: Lim, Curty, Walenta, Xu, Zbinden, PRA 89, 022307 (2014).  Three
  intensities mu1 > mu2 + mu3, mu2 > mu3 >= 0 (mu3 vacuum or weak).  Hoeffding
  deviations with ln(21/eps_sec); ell = s0 + s1 (1 - h(phi)) - leak_EC
  - 6 log2(21/eps_sec) - log2(2/eps_cor).
* ``one-decoy``: Rusca, Boaron, Gruenenfelder, Martin, Zbinden, APL 112, 171104
  (2018).  Two intensities mu1 > mu2; the vacuum yield is bounded from above by
  the decoy error count; constants 19 in place of 21.

Counts are per intensity (index 0 = signal mu1) in the *key* basis (Z in this
project; Lim et al. call it X) and in the *test* basis (X here; their Z).  All
lengths are in bits.  ``leak_ec_bits`` is what the channel metered during error
correction (or f n h(E) when planning).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .infotheory import h2


@dataclass(frozen=True)
class DecoyCounts:
    """Observed (or expected) detection and error counts per intensity class.

    intensities: mean photon numbers, signal first (mu1 > mu2 [> mu3]).
    probabilities: probability Alice picks each intensity (sums to 1).
    n_key, m_key: detections and errors in the key basis, per intensity.
    n_test, m_test: detections and errors in the test basis, per intensity.
    """

    intensities: tuple[float, ...]
    probabilities: tuple[float, ...]
    n_key: tuple[float, ...]
    m_key: tuple[float, ...]
    n_test: tuple[float, ...]
    m_test: tuple[float, ...]

    def __post_init__(self):
        k = len(self.intensities)
        for name in ("probabilities", "n_key", "m_key", "n_test", "m_test"):
            if len(getattr(self, name)) != k:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries, "
                                 f"expected one per intensity ({k})")
        if abs(sum(self.probabilities) - 1.0) > 1e-9:
            raise ValueError(f"intensity probabilities sum to {sum(self.probabilities)}, expected 1")


@dataclass(frozen=True)
class FiniteKeyResult:
    """Secret key length and the bounds it came from (all in bits / counts)."""

    length: int            # extractable secret bits, floor, >= 0
    raw_length: float      # the bound before flooring and clamping (may be negative)
    s0: float              # lower bound, vacuum events in the key basis
    s1: float              # lower bound, single-photon events in the key basis
    phi: float             # upper bound, single-photon phase error rate
    leak_ec_bits: float
    qber_key: float


def _tau(n: int, mus: np.ndarray, ps: np.ndarray) -> float:
    """Probability that Alice sent n photons: sum_k p_k e^-k k^n / n!."""
    return float(np.sum(ps * np.exp(-mus) * mus ** n) / math.factorial(n))


def _gamma(a: float, b: float, c: float, d: float, const: float) -> float:
    """Random-sampling deviation of the phase error rate (Lim et al. 2014, Eq. 5)."""
    if b <= 0.0 or b >= 1.0 or c <= 0.0 or d <= 0.0:
        return 0.5
    arg = (c + d) / (c * d * (1.0 - b) * b) * const * const / (a * a)
    return math.sqrt((c + d) * (1.0 - b) * b / (c * d * math.log(2.0)) * math.log2(arg))


def _scaled(counts, mus, ps, total, eps_term, sign):
    """e^k / p_k * (count_k +- sqrt(total / 2 * ln(const / eps))) per intensity."""
    delta = math.sqrt(max(total, 0.0) / 2.0 * eps_term)
    return np.exp(mus) / ps * (np.asarray(counts, dtype=float) + sign * delta)


def _two_decoy_yields(n, total, mus, ps, eps_term):
    """Lower bounds on vacuum and single-photon counts (Lim et al. 2014, Eqs. 2-3)."""
    mu1, mu2, mu3 = mus
    lo = _scaled(n, mus, ps, total, eps_term, -1.0)
    hi = _scaled(n, mus, ps, total, eps_term, +1.0)
    tau0, tau1 = _tau(0, mus, ps), _tau(1, mus, ps)
    s0 = tau0 * (mu2 * lo[2] - mu3 * hi[1]) / (mu2 - mu3)
    s0 = max(s0, 0.0)
    s1 = tau1 * mu1 * (lo[1] - hi[2] - (mu2 ** 2 - mu3 ** 2) / mu1 ** 2 * (hi[0] - s0 / tau0)) \
        / (mu1 * (mu2 - mu3) - mu2 ** 2 + mu3 ** 2)
    return s0, max(s1, 0.0)


def _one_decoy_yields(n, m, total_n, total_m, mus, ps, eps_term):
    """Vacuum (lower, upper) and single-photon (lower) counts (Rusca et al. 2018)."""
    mu1, mu2 = mus
    lo = _scaled(n, mus, ps, total_n, eps_term, -1.0)
    hi = _scaled(n, mus, ps, total_n, eps_term, +1.0)
    tau0, tau1 = _tau(0, mus, ps), _tau(1, mus, ps)
    # Vacuum pulses err with probability 1/2: twice the decoy error count bounds them.
    m_hi = _scaled(m, mus, ps, total_m, eps_term, +1.0)
    # The extra Hoeffding term turns the expected vacuum count into an observed one.
    s0_u = 2.0 * (tau0 * m_hi[1] + math.sqrt(total_n / 2.0 * eps_term))
    s0_l = max(tau0 * (mu1 * lo[1] - mu2 * hi[0]) / (mu1 - mu2), 0.0)
    s1 = tau1 * mu1 / (mu2 * (mu1 - mu2)) * (
        lo[1] - mu2 ** 2 / mu1 ** 2 * hi[0] - (mu1 ** 2 - mu2 ** 2) / mu1 ** 2 * s0_u / tau0)
    return s0_l, s0_u, max(s1, 0.0)


def secret_key_length(counts: DecoyCounts, leak_ec_bits: float, eps_sec: float = 1e-10,
                      eps_cor: float = 1e-15, method: str = "two-decoy") -> FiniteKeyResult:
    """Return the extractable secret key length for one block of key-basis detections.

    ``method`` is ``two-decoy`` (Lim et al. 2014, three intensities) or ``one-decoy``
    (Rusca et al. 2018, two intensities).  eps_sec bounds the secrecy failure,
    eps_cor the correctness failure (the verification tag must match it).
    """
    mus = np.asarray(counts.intensities, dtype=float)
    ps = np.asarray(counts.probabilities, dtype=float)
    n_key = float(np.sum(counts.n_key))
    m_key = float(np.sum(counts.m_key))
    n_test = float(np.sum(counts.n_test))
    m_test = float(np.sum(counts.m_test))
    tau1 = _tau(1, mus, ps)
    if method == "two-decoy":
        if len(mus) != 3 or not (mus[0] > mus[1] + mus[2] and mus[1] > mus[2] >= 0.0):
            raise ValueError(f"two-decoy needs mu1 > mu2 + mu3, mu2 > mu3 >= 0; got {tuple(mus)}")
        const = 21.0
        eps_term = math.log(const / eps_sec)
        s0, s1 = _two_decoy_yields(counts.n_key, n_key, mus, ps, eps_term)
        _, s1_test = _two_decoy_yields(counts.n_test, n_test, mus, ps, eps_term)
        m_hi = _scaled(counts.m_test, mus, ps, m_test, eps_term, +1.0)
        m_lo = _scaled(counts.m_test, mus, ps, m_test, eps_term, -1.0)
        v1 = tau1 * (m_hi[1] - m_lo[2]) / (mus[1] - mus[2])
    elif method == "one-decoy":
        if len(mus) != 2 or not mus[0] > mus[1] > 0.0:
            raise ValueError(f"one-decoy needs mu1 > mu2 > 0; got {tuple(mus)}")
        const = 19.0
        eps_term = math.log(const / eps_sec)
        s0, _, s1 = _one_decoy_yields(counts.n_key, counts.m_key, n_key, m_key, mus, ps, eps_term)
        _, _, s1_test = _one_decoy_yields(counts.n_test, counts.m_test, n_test, m_test,
                                          mus, ps, eps_term)
        m_hi = _scaled(counts.m_test, mus, ps, m_test, eps_term, +1.0)
        m_lo = _scaled(counts.m_test, mus, ps, m_test, eps_term, -1.0)
        v1 = tau1 * (m_hi[0] - m_lo[1]) / (mus[0] - mus[1])
    else:
        raise ValueError(f"unknown finite-key method {method!r}; expected 'two-decoy' or 'one-decoy'")
    if s1_test > 0.0 and s1 > 0.0:
        ratio = min(max(v1 / s1_test, 0.0), 0.5)
        phi = min(ratio + _gamma(eps_sec, ratio, s1_test, s1, const), 0.5)
    else:
        phi = 0.5
    raw = (s0 + s1 * (1.0 - h2(phi)) - leak_ec_bits
           - 6.0 * math.log2(const / eps_sec) - math.log2(2.0 / eps_cor))
    qber = m_key / n_key if n_key > 0 else 0.5
    return FiniteKeyResult(length=max(int(math.floor(raw)), 0), raw_length=raw, s0=s0, s1=s1,
                           phi=phi, leak_ec_bits=leak_ec_bits, qber_key=qber)


def tag_bits_for(eps_cor: float) -> int:
    """Return the verification tag length (bits) so that a collision has prob <= eps_cor."""
    return int(math.ceil(math.log2(1.0 / eps_cor)))
