"""Key-rate planning: expected secret key per pulse versus distance, with optimisation.

``plan`` evaluates one operating point (optionally optimising intensities and
probabilities) and can find the maximum distance where the rate reaches zero.
Asymptotic modes come from :mod:`asymptotic`; finite-key modes build expected
counts from :mod:`link_model` and evaluate :func:`finite_key.secret_key_length`
for a block of ``block_size`` key-basis detections (Lim et al.'s n_X).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from . import asymptotic
from .finite_key import DecoyCounts, secret_key_length
from .infotheory import h2
from .link_model import LinkParameters, class_rates, preset

DECOY_MODES = ("infinite", "vacuum-weak", "none", "two-decoy", "one-decoy")
FINITE_MODES = ("two-decoy", "one-decoy")


@dataclass(frozen=True)
class FiniteSettings:
    """Protocol settings of a finite-key run: key-basis probability and intensities.

    p_key: probability of choosing the key basis (both sides, independently).
    intensities: mean photon numbers, signal first.  probabilities: their choice probabilities.
    """

    p_key: float
    intensities: tuple[float, ...]
    probabilities: tuple[float, ...]


DEFAULT_ASYMPTOTIC = {"infinite": {"mu": 0.5}, "vacuum-weak": {"mu": 0.5, "nu": 0.1},
                      "none": {"mu": 0.05}}
DEFAULT_FINITE = {
    "two-decoy": FiniteSettings(0.9, (0.5, 0.1, 2e-4), (0.7, 0.2, 0.1)),
    "one-decoy": FiniteSettings(0.9, (0.5, 0.1), (0.7, 0.3)),
}


def expected_counts(params: LinkParameters, distance_km: float, block_size: float,
                    settings: FiniteSettings) -> tuple[DecoyCounts, float]:
    """Return the expected counts for ``block_size`` key-basis detections and the pulses sent."""
    eta = params.transmittance(distance_km)
    mus = np.asarray(settings.intensities, dtype=float)
    ps = np.asarray(settings.probabilities, dtype=float)
    r, e = class_rates(params, eta, mus, ps)
    pk, pt = settings.p_key ** 2, (1.0 - settings.p_key) ** 2
    pulses = block_size / (pk * float(np.sum(ps * r)))
    counts = DecoyCounts(tuple(mus), tuple(ps), tuple(pulses * pk * ps * r),
                         tuple(pulses * pk * ps * e), tuple(pulses * pt * ps * r),
                         tuple(pulses * pt * ps * e))
    return counts, pulses


def finite_rate(params: LinkParameters, distance_km: float, block_size: float,
                settings: FiniteSettings, method: str) -> float:
    """Return the finite-key secret bits per pulse sent (unclamped; negative = no key)."""
    counts, pulses = expected_counts(params, distance_km, block_size, settings)
    qber = sum(counts.m_key) / sum(counts.n_key)
    leak = params.f_ec * block_size * h2(min(qber, 0.5))
    res = secret_key_length(counts, leak, params.eps_sec, params.eps_cor, method)
    return res.raw_length / pulses


def reconciliation_efficiency(n_bits: int, qber: float, *, mode: str = "low-round",
                              eps_cor: float = 1e-15, seeds=(1, 2, 3), method: str = "cascade") -> float:
    """Return f = leak / (n h(QBER)) of the node's reconciliation, measured (median over seeds).

    Runs the node's reconciliation ``method`` on ``n_bits`` random bits: "cascade", this
    project's Cascade (``mode``, the node's schedule for that QBER), or "ldpc", its LDPC
    (design QBER ``ldpc.design_qber(qber)``, default options).  The bits have independent
    errors at rate ``qber`` and cross a metering channel; the verification tag the node
    discloses (61 bits per point, ``points_needed(n, eps_cor)``) is added: the same leak the
    node meters per block.  Feed it to the model as ``f_ec`` so the planned
    rate uses the reconciliation actually run, not a textbook f.
    """
    from .cascade import block_schedule, cascade
    from .channel import LocalChannel
    from .ldpc import design_qber, ldpc
    from .reconcile import METHODS
    from .verify import points_needed
    n = int(n_bits)
    if n < 1 or not 0.0 < qber < 0.5:
        raise ValueError(f"need n_bits >= 1 and 0 < qber < 0.5, got {n_bits}, {qber}")
    if method not in METHODS:
        raise ValueError(f"method must be {' or '.join(map(repr, METHODS))}, got {method!r}")
    ks = block_schedule(n, min(max(qber, 0.005), 0.25), 20, mode) if method == "cascade" else None
    fs = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        x = rng.integers(0, 2, n, dtype=np.uint8)
        y = x ^ (rng.random(n) < qber).astype(np.uint8)
        ch = LocalChannel()
        if method == "ldpc":
            ldpc(x, y, design_qber(qber), ch, seed=seed, rng=np.random.default_rng([seed, 1]))
        else:
            cascade(x, y, qber, ch, seed=seed, mode=mode, schedule=ks)
        leak = ch.stats.leaked_bits + 61 * points_needed(n, eps_cor)
        fs.append(leak / (n * h2(qber)))
    return float(np.median(fs))


def _sigmoid(x):
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))


def _logit(p):
    return math.log(p / (1.0 - p))


def _decode(x, method, mu3):
    """Map unconstrained coordinates to valid finite-key settings."""
    p_key = 0.05 + 0.949 * _sigmoid(x[0])
    mu1 = 0.02 + 0.98 * _sigmoid(x[1])
    a, b = 0.01 + 0.98 * _sigmoid(x[3]), 0.01 + 0.98 * _sigmoid(x[4]) if len(x) > 4 else 0.0
    u = 0.01 + 0.98 * _sigmoid(x[2])
    if method == "two-decoy":
        mu2 = mu3 + u * (mu1 - 2.0 * mu3)
        probs = (a, (1.0 - a) * b, (1.0 - a) * (1.0 - b))
        return FiniteSettings(p_key, (mu1, mu2, mu3), probs)
    return FiniteSettings(p_key, (mu1, u * mu1), (a, 1.0 - a))


def _encode(s: FiniteSettings, method: str):
    mu1 = s.intensities[0]
    x = [_logit((s.p_key - 0.05) / 0.949), _logit((mu1 - 0.02) / 0.98)]
    if method == "two-decoy":
        mu3 = s.intensities[2]
        u = (s.intensities[1] - mu3) / (mu1 - 2.0 * mu3)
        a = s.probabilities[0]
        b = s.probabilities[1] / (1.0 - a)
        x += [_logit((u - 0.01) / 0.98), _logit((a - 0.01) / 0.98), _logit((b - 0.01) / 0.98)]
    else:
        u = s.intensities[1] / mu1
        x += [_logit((u - 0.01) / 0.98), _logit((s.probabilities[0] - 0.01) / 0.98)]
    return np.asarray(x)


def optimize_finite(params, distance_km, block_size, method, start=None, mu3=2e-4):
    """Return (settings, rate) maximising the finite-key rate (Nelder-Mead, several starts)."""
    starts = [start or DEFAULT_FINITE[method]]
    starts += [FiniteSettings(0.8, (0.4, 0.15, mu3), (0.6, 0.3, 0.1)),
               FiniteSettings(0.95, (0.6, 0.2, mu3), (0.8, 0.15, 0.05))]
    if method == "one-decoy":
        starts = [starts[0], FiniteSettings(0.8, (0.4, 0.15), (0.6, 0.4)),
                  FiniteSettings(0.95, (0.6, 0.2), (0.8, 0.2))]
    eta = params.transmittance(distance_km)
    scale = 1.0 / max(eta, 1e-300)

    def f(x):
        s = _decode(x, method, mu3)
        try:
            return -finite_rate(params, distance_km, block_size, s, method) * scale
        except (ValueError, ZeroDivisionError, OverflowError):
            return 1e30
    xs = [_encode(FiniteSettings(s0.p_key, (*s0.intensities[:2], mu3), s0.probabilities)
                  if method == "two-decoy" else s0, method) for s0 in starts]
    # A coarse deterministic scan first: small blocks need far from default settings.
    grid = np.random.default_rng(12345).uniform(-4.0, 4.0, size=(150, len(xs[0])))
    scanned = sorted(grid, key=f)[:2]
    best = None
    for x0 in xs + scanned:
        r = optimize.minimize(f, x0, method="Nelder-Mead",
                              options={"xatol": 1e-4, "fatol": 1e-9, "maxiter": 3000})
        if best is None or r.fun < best.fun:
            best = r
    s = _decode(best.x, method, mu3)
    return s, -best.fun / scale


def _asymptotic_rate(params, distance_km, decoy, settings):
    if decoy == "infinite":
        return asymptotic.rate_infinite_decoy(params, distance_km, settings["mu"])
    if decoy == "vacuum-weak":
        return asymptotic.rate_vacuum_weak(params, distance_km, settings["mu"], settings["nu"])
    return asymptotic.rate_no_decoy(params, distance_km, settings["mu"])


def optimize_asymptotic(params, distance_km, decoy, nu=None):
    """Return (settings, rate) maximising the asymptotic rate over mu (and nu if not fixed)."""
    eta = params.transmittance(distance_km)
    scale = 1.0 / eta
    if decoy == "vacuum-weak" and nu is None:
        def f(x):
            mu = 0.01 + 0.99 * _sigmoid(x[0])
            nu_ = mu * (0.001 + 0.998 * _sigmoid(x[1]))
            return -asymptotic.rate_vacuum_weak(params, distance_km, mu, nu_) * scale
        best = min((optimize.minimize(f, np.array(x0), method="Nelder-Mead",
                                      options={"xatol": 1e-6, "fatol": 1e-12, "maxiter": 4000})
                    for x0 in ([0.0, -2.0], [0.5, -4.0])), key=lambda r: r.fun)
        mu = 0.01 + 0.99 * _sigmoid(best.x[0])
        return {"mu": mu, "nu": mu * (0.001 + 0.998 * _sigmoid(best.x[1]))}, -best.fun / scale
    hi = 1.0 if decoy != "none" else 0.5
    lo = nu * 1.0001 if decoy == "vacuum-weak" else 1e-6

    def g(mu):
        extra = {"nu": nu} if decoy == "vacuum-weak" else {}
        return -_asymptotic_rate(params, distance_km, decoy, {"mu": mu, **extra}) * scale
    r = optimize.minimize_scalar(g, bounds=(lo, hi), method="bounded", options={"xatol": 1e-7})
    out = {"mu": float(r.x)}
    if decoy == "vacuum-weak":
        out["nu"] = nu
    return out, -float(r.fun) / scale


def rate_at(params: LinkParameters, distance_km: float, decoy: str, block_size=None,
            optimize_settings=False, settings=None):
    """Return (settings, bits per pulse) at one distance; unclamped (negative = no key)."""
    if decoy not in DECOY_MODES:
        raise ValueError(f"unknown decoy mode {decoy!r}; expected one of {DECOY_MODES}")
    if decoy in FINITE_MODES:
        if block_size is None:
            raise ValueError(f"decoy mode {decoy!r} is finite-key: give block_size (n_X)")
        if optimize_settings:
            return optimize_finite(params, distance_km, block_size, decoy, settings)
        s = settings or DEFAULT_FINITE[decoy]
        return s, finite_rate(params, distance_km, block_size, s, decoy)
    if optimize_settings:
        nu = settings.get("nu") if settings else None
        return optimize_asymptotic(params, distance_km, decoy, nu)
    s = settings or DEFAULT_ASYMPTOTIC[decoy]
    return s, _asymptotic_rate(params, distance_km, decoy, s)


def max_distance(params: LinkParameters, decoy: str, block_size=None, optimize_settings=False,
                 settings=None, hi_km: float = 400.0, tol_km: float = 0.01) -> float:
    """Return the distance in km where the key rate reaches zero (0 if none at 0 km)."""
    def f(d):
        return rate_at(params, d, decoy, block_size, optimize_settings, settings)[1]
    if f(0.0) <= 0.0:
        return 0.0
    lo, hi = 0.0, 10.0
    while f(hi) > 0.0:
        lo, hi = hi, hi * 1.5
        if hi > hi_km:
            return math.inf
    while hi - lo > tol_km:
        mid = 0.5 * (lo + hi)
        if f(mid) > 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def plan(preset_name: str | LinkParameters = "gys2005", distance_km: float = 50.0,
         decoy: str = "infinite", block_size: float | None = None, optimize_settings: bool = False,
         find_max_distance: bool = False, settings=None) -> dict:
    """Return a planning summary: key_rate_per_pulse (bits, >= 0), settings, max_distance_km."""
    params = preset(preset_name) if isinstance(preset_name, str) else preset_name
    s, r = rate_at(params, distance_km, decoy, block_size, optimize_settings, settings)
    out = {
        "preset": preset_name if isinstance(preset_name, str) else "custom",
        "distance_km": distance_km,
        "decoy": decoy,
        "block_size": block_size,
        "key_rate_per_pulse": max(r, 0.0),
        "settings": s if isinstance(s, dict) else {
            "p_key": s.p_key, "intensities": list(s.intensities),
            "probabilities": list(s.probabilities)},
    }
    if find_max_distance:
        out["max_distance_km"] = max_distance(params, decoy, block_size, optimize_settings, settings)
    return out
