"""Offline design of the LDPC information-column degree profile by density evolution.

The codes of ``_qc`` are IRA codes: m degree-2 staircase variables (a fraction ``punct`` of
them punctured, no channel value) and information variables of degrees d >= 3 in node
fractions ``a_d``; every check holds two staircase edges and its share of the information
edges (check degrees differ by at most one).  Over a BSC of crossover p, syndrome decoding
of any word behaves like decoding the all-zero word, so the channel LLR is +l0 with
probability 1 - p and -l0 with probability p, l0 = ln((1 - p) / p).

Density evolution tracks y = 1 - E[tanh(v / 2)] of the variable-to-check messages v, one
value for staircase edges (ys) and one for information edges (yi): every check holds
exactly two staircase edges, which a single-type ensemble (staircase edges spread at
random) misses badly at low rate.

* check node: tanh(u/2) is the product of the inputs' tanh(v/2), so for independent inputs
  1 - y_u = (1 - ys)^a (1 - yi)^b exactly for a staircase and b information inputs,
  averaged over the check degrees;
* check-to-variable messages are taken Gaussian, u ~ N(mu, 2 mu), with mu fixed by
  y_u = E[2 / (1 + e^u)] (the one approximation, as in Chung, Richardson and Urbanke's
  Gaussian approximation); the channel part stays exact (+-l0, or 0 when punctured);
* variable node of degree i: v = L_ch + sum of i - 1 messages, so
  y_i = E[2 / (1 + e^v)] with the sum N((i - 1) mu, 2 (i - 1) mu), by quadrature.

Decoding succeeds when both y decrease to 0 from the channel values (``evolve``,
``threshold``).  For a fixed check degree, with the staircase messages at their fixed
point for given information messages, the next yi is linear in the information edge
fractions, so the profile of highest rate whose yi shrinks by a margin per iteration is a
linear programme over a grid of yi (``optimise``; ``best_profile`` scans the check degree).

Efficiency of a design: the first attempt leaks m - p syndrome bits for k key bits (the
information and the unpunctured staircase variables), f = (m - p) / (k h(p_channel)).

``python -m controller.postprocess.ldpc_design`` prints the optimised profiles at 2, 5 and
8 %; ``_qc.PROFILES`` holds rounded optima, the best of them on 10^5-bit frames
(docs/BENCHMARKS.md, "LDPC codes").
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linprog
from scipy.special import expit

from .infotheory import h2

_Z = np.linspace(-12.0, 12.0, 961)                  # standard normal quadrature points
_W = np.exp(-_Z ** 2 / 2)
_W /= _W.sum()
_MU = np.geomspace(1e-4, 4e3, 1200)                # table of y_u(mu) for u ~ N(mu, 2 mu)


def _gauss_err(mean, var, shift):
    """Return E[2 / (1 + e^(shift + G))] for G ~ N(mean, var) (arrays broadcast)."""
    v = shift + mean[..., None] + np.sqrt(var)[..., None] * _Z
    return 2.0 * (expit(-v) * _W).sum(axis=-1)


_YU = _gauss_err(_MU, 2 * _MU, 0.0)
_MU, _YU = _MU[_YU > 1e-290], _YU[_YU > 1e-290]
_LOG_YU = np.log(_YU[::-1])
_LOG_MU = np.log(_MU[::-1])


def mu_of(yu: np.ndarray) -> np.ndarray:
    """Return the mean mu of a consistent Gaussian message with E[2 / (1 + e^u)] = ``yu``."""
    yu = np.clip(np.asarray(yu, dtype=float), _YU[-1], _YU[0])
    return np.exp(np.interp(np.log(yu), _LOG_YU, _LOG_MU))


@dataclass(frozen=True)
class Ensemble:
    """An IRA ensemble per check: ``info`` {degree: information edges per check}; two
    staircase edges per check, a fraction ``punct`` of staircase variables punctured."""

    info: dict[int, float]
    punct: float = 0.0
    stair: int = 2

    @property
    def check_degree(self) -> float:
        """Return the mean check degree: staircase plus information edges per check."""
        return self.stair + sum(self.info.values())

    @property
    def info_per_check(self) -> float:
        """Return information variables per check."""
        return sum(x / d for d, x in self.info.items())

    @property
    def k_per_check(self) -> float:
        """Return key bits per check: information and unpunctured staircase variables."""
        return self.info_per_check + self.stair / 2 * (1.0 - self.punct)

    @property
    def leak_per_check(self) -> float:
        """Return syndrome bits leaked per check, 1 - punctured staircase variables per check."""
        return 1.0 - self.stair / 2 * self.punct

    @property
    def rate(self) -> float:
        """Return the rate of the first attempt, 1 - leak / k."""
        return 1.0 - self.leak_per_check / self.k_per_check

    def efficiency(self, p: float) -> float:
        """Return f = leaked / (k h(p)) of the first attempt."""
        return self.leak_per_check / (self.k_per_check * float(h2(p)))

    def node_fractions(self) -> dict[int, float]:
        """Return the information-column degree profile (node fractions, the ``_qc`` form)."""
        k = self.info_per_check
        return {d: x / d / k for d, x in sorted(self.info.items()) if x > 0}

    @classmethod
    def from_nodes(cls, fractions: dict[int, float], info_per_check: float, punct: float = 0.0) -> "Ensemble":
        """Return the IRA ensemble of information-column node fractions ``fractions`` with
        ``info_per_check`` information variables per check (kb / mb of a base matrix)."""
        total = sum(fractions.values())
        return cls({d: a / total * d * info_per_check for d, a in fractions.items()}, punct)


def _mix(dcl: float) -> tuple[np.ndarray, np.ndarray]:
    """Return information-edge counts floor(dcl), floor(dcl) + 1 per check and their check
    (node) fractions, mean ``dcl`` (check degrees differ by at most one, as in ``_qc``)."""
    lo = math.floor(dcl)
    t = dcl - lo
    return np.array([lo, lo + 1]), np.array([1.0 - t, t])


def _checks(ys, yi, dcl: float, stair: int):
    """Return (y of check-to-info messages, y of check-to-staircase messages) for inputs of y
    ``ys`` on staircase and ``yi`` on information edges."""
    js, node = _mix(dcl)
    ys, yi = np.asarray(ys, dtype=float)[..., None], np.asarray(yi, dtype=float)[..., None]
    ls = np.log1p(-np.minimum(ys, 1 - 1e-15))
    li = np.log1p(-np.minimum(yi, 1 - 1e-15))
    w_i = node * js / (node * js).sum()
    to_info = (w_i * -np.expm1(stair * ls + (js - 1) * li)).sum(axis=-1)
    to_stair = (node * -np.expm1((stair - 1) * ls + js * li)).sum(axis=-1)
    return to_info, to_stair


def _gerr(mu, p: float, punct: float = 0.0) -> np.ndarray:
    """y of a variable's message: channel (+-l0, or 0 with probability ``punct``) plus a
    Gaussian sum of mean ``mu`` (array)."""
    mu = np.asarray(mu, dtype=float)
    l0 = math.log((1 - p) / p)
    out = (1 - p) * _gauss_err(mu, 2 * mu, l0) + p * _gauss_err(mu, 2 * mu, -l0)
    if punct > 0:
        out = (1 - punct) * out + punct * _gauss_err(mu, 2 * mu, 0.0)
    return out


def _start(p: float, punct: float) -> tuple[float, float]:
    y = float(_gerr(np.zeros(1), p)[0])
    return (1 - punct) * y + punct, y


def _stair_fixed_point(yi: np.ndarray, dcl: float, p: float, punct: float, iters: int = 400) -> np.ndarray:
    """Return the staircase messages' y reached for fixed information inputs ``yi`` (the
    accumulator chain iterated to its fixed point, as a row-serial sweep nearly does)."""
    ys = np.full_like(yi, _start(p, punct)[0])
    for _ in range(iters):
        _, to_s = _checks(ys, yi, dcl, 2)
        ys_new = _gerr(mu_of(to_s), p, punct)
        if np.max(np.abs(ys_new - ys)) < 1e-13:
            return ys_new
        ys = ys_new
    return ys


def evolve(ens: Ensemble, p: float, max_iter: int = 5000, target: float = 1e-9) -> tuple[bool, int]:
    """Run density evolution (both edge types updated each iteration); return (converged to
    y < ``target`` on every edge, iterations)."""
    dcl = sum(ens.info.values())
    degs = np.array(sorted(ens.info), dtype=float)
    lam = np.array([ens.info[d] for d in sorted(ens.info)]) / dcl
    ys, yi = _start(p, ens.punct)
    for it in range(1, max_iter + 1):
        to_i, to_s = _checks(ys, yi, dcl, ens.stair)
        yi_new = float((lam * _gerr((degs - 1) * mu_of(to_i), p)).sum())
        ys_new = float(_gerr(mu_of(to_s), p, ens.punct)) if ens.stair else 0.0
        if max(yi_new, ys_new) < target:
            return True, it
        if yi_new >= yi * (1 - 1e-9) and ys_new >= ys * (1 - 1e-9):
            return False, it
        ys, yi = ys_new, yi_new
    return False, max_iter


def threshold(ens: Ensemble, lo: float = 1e-3, hi: float = 0.3, tol: float = 1e-5) -> float:
    """Return the largest crossover probability p at which ``ens`` converges (bisection)."""
    if not evolve(ens, lo)[0]:
        return 0.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if evolve(ens, mid)[0]:
            lo = mid
        else:
            hi = mid
    return lo


def optimise(p: float, dcl: float, degrees: list[int], punct: float = 0.0,
             margin: float = 0.0, grid: int = 300) -> Ensemble | None:
    """Return the IRA ensemble of highest rate with ``dcl`` information edges per check and
    information degrees from ``degrees`` whose information messages shrink at crossover
    ``p`` by a factor (1 - margin) per iteration (the staircase at its fixed point) on a grid
    of y; None when no profile does."""
    degrees = sorted(set(int(d) for d in degrees))
    if min(degrees) < 2:
        raise ValueError("information degrees must be >= 2")
    yi = np.geomspace(1e-9, _start(p, punct)[1], grid)
    ys = _stair_fixed_point(yi, dcl, p, punct)
    to_i, _ = _checks(ys, yi, dcl, 2)
    mu = mu_of(to_i)
    terms = np.array([_gerr((d - 1) * mu, p) for d in degrees]) / dcl
    res = linprog(-1.0 / np.array(degrees, dtype=float), A_ub=terms.T, b_ub=(1 - margin) * yi,
                  A_eq=np.ones((1, len(degrees))), b_eq=np.array([dcl]), bounds=(0, None),
                  method="highs")
    if res.status != 0:
        return None
    return Ensemble({d: float(x) for d, x in zip(degrees, res.x) if x > 1e-9}, punct)


def best_profile(p: float, degrees: list[int], punct: float = 0.0, margin: float = 0.0,
                 dcs: np.ndarray | None = None) -> Ensemble:
    """Return the optimised ensemble of smallest efficiency at ``p`` over information edges
    per check ``dcs``."""
    dcs = np.arange(6.0, 50.0, 1.0) if dcs is None else dcs
    best = None
    for dc in dcs:
        ens = optimise(p, float(dc), degrees, punct, margin)
        if ens is not None and (best is None or ens.efficiency(p) < best.efficiency(p)):
            best = ens
    if best is None:
        raise ValueError(f"no profile with degrees {degrees} converges at p = {p}")
    return best


def main(argv: list[str] | None = None) -> None:
    """Print optimised profiles (node fractions) per design QBER as JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qber", type=float, nargs="+", default=[0.02, 0.05, 0.08])
    ap.add_argument("--degrees", type=int, nargs="+", default=[3, 4, 5, 6, 7, 8, 9, 10, 12, 14, 16, 20, 25, 30, 35, 40])
    ap.add_argument("--punct", type=float, default=0.045, help="fraction of staircase bits punctured")
    ap.add_argument("--margin", type=float, default=0.03, help="relative decrease of y required per iteration")
    args = ap.parse_args(argv)
    out = {}
    for q in args.qber:
        ens = best_profile(q, args.degrees, args.punct, args.margin)
        out[q] = {"profile": {d: round(a, 4) for d, a in ens.node_fractions().items()},
                  "check_degree": round(ens.check_degree, 2), "k_per_check": round(ens.k_per_check, 3),
                  "efficiency": round(ens.efficiency(q), 4)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
