"""Dead time and afterpulsing of Bob's detectors, applied to a time-ordered stream of clicks.

Model (per detector, non-paralysable):

* a click arriving less than ``dead_ps`` after the last *registered* click of its detector is
  lost (counted in ``rejected``) and leaves the detector unchanged;
* a registered click schedules, with probability ``p_ap``, one afterpulse at
  ``t + dead_ps + Exp(tau_ps)`` (the trap-release probability decays exponentially once the
  detector is armed again); gated detectors fire it in the next gate, at a uniform time within
  the gate;
* a registered click replaces a still pending afterpulse of its detector (the new avalanche
  re-fills the traps; the old release would mostly fall into the new dead time);
* afterpulses are clicks like any other: they can themselves be followed by afterpulses.

Randomness comes from arrays drawn by the caller's numpy Generator, so runs are deterministic.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

INF = np.inf


@njit(cache=True)
def _schedule(t, d, u, e, g, p_ap, dead_ps, tau_ps, gated, period_ps, origin_ps, gate_ps):
    # Returns the time of the afterpulse triggered by a click at t on detector d, or +inf.
    if u >= p_ap:
        return INF
    ta = t + dead_ps + e * tau_ps
    if gated:
        k = math.ceil((ta - origin_ps[d] - 0.5 * gate_ps) / period_ps)
        ta = origin_ps[d] + k * period_ps + (g - 0.5) * gate_ps
        while ta < t + dead_ps:        # the gate must open after the dead time
            ta += period_ps
    return ta


@njit(cache=True)
def apply_detectors(times, dets, raw_u, raw_e, raw_g, pool_u, pool_e, pool_g, pool_pos,
                    last, pending, end_ps, p_ap, dead_ps, tau_ps, gated, period_ps,
                    origin_ps, gate_ps, out_t, out_d, out_src):
    """Merge clicks with afterpulses and apply dead time; return (n_out, n_rejected, pool_pos, ok).

    times/dets: raw clicks sorted by time (ps, detector index). raw_u/raw_e/raw_g: per raw click,
    a uniform (afterpulse or not), an Exp(1) (delay) and a uniform (place in the gate).
    pool_*: the same for afterpulses, used from pool_pos on. last/pending: per detector, time of
    the last registered click and of the pending afterpulse (+inf if none), updated in place.
    Pending afterpulses later than end_ps stay pending (the next chunk may hold earlier clicks).
    out_src: index of the raw click, or -1 for an afterpulse. ok is False if the pool ran out
    (nothing is then valid: the caller retries with a larger pool and the saved state).
    """
    n = times.shape[0]
    i = 0
    n_out = 0
    rejected = 0
    while True:
        # earliest pending afterpulse
        dp = -1
        tp = INF
        for d in range(4):
            if pending[d] < tp:
                tp = pending[d]
                dp = d
        take_raw = i < n and times[i] <= tp
        if not take_raw:
            if dp < 0 or not (tp < end_ps or i < n):
                break
        if take_raw:
            t = times[i]
            d = dets[i]
            u = raw_u[i]
            e = raw_e[i]
            g = raw_g[i]
            src = i
            i += 1
            if t - last[d] < dead_ps:
                rejected += 1
                continue
        else:
            t = tp
            d = dp
            pending[d] = INF
            if pool_pos >= pool_u.shape[0]:
                return n_out, rejected, pool_pos, False
            u = pool_u[pool_pos]
            e = pool_e[pool_pos]
            g = pool_g[pool_pos]
            pool_pos += 1
            src = -1
        last[d] = t
        pending[d] = _schedule(t, d, u, e, g, p_ap, dead_ps, tau_ps, gated, period_ps,
                               origin_ps, gate_ps)
        out_t[n_out] = t
        out_d[n_out] = d
        out_src[n_out] = src
        n_out += 1
    return n_out, rejected, pool_pos, True


class DetectorBank:
    """The state of Bob's four detectors across chunks: last click and pending afterpulse."""

    def __init__(self, receiver, period_ps: float, origin_ps):
        self.receiver = receiver
        self.period_ps = float(period_ps)
        self.origin_ps = np.asarray(origin_ps, dtype=np.float64)
        self.last = np.full(4, -INF)
        self.pending = np.full(4, INF)
        self.rejected = 0
        self.afterpulses = 0

    @property
    def active(self) -> bool:
        """Return True if dead time or afterpulses need the sequential pass."""
        return self.receiver.dead_time_ps > 0 or self.receiver.afterpulse_probability > 0

    def gate_ps(self) -> float:
        """Return the width of the window a gated afterpulse falls into, in ps."""
        r = self.receiver
        return r.gate_width_ps if r.gated else self.period_ps

    def process(self, rng, times, dets, end_ps):
        """Return (times, dets, src) of the registered clicks; src = raw index or -1 (afterpulse)."""
        r = self.receiver
        n = times.shape[0]
        raw_u, raw_e, raw_g = rng.random(n), rng.standard_exponential(n), rng.random(n)
        pool = max(64, int(4 * r.afterpulse_probability * n) + 64)
        pool_u, pool_e, pool_g = rng.random(pool), rng.standard_exponential(pool), rng.random(pool)
        while True:
            last, pending = self.last.copy(), self.pending.copy()
            cap = n + pool_u.shape[0] + 4
            out_t = np.empty(cap)
            out_d = np.empty(cap, dtype=np.int64)
            out_src = np.empty(cap, dtype=np.int64)
            n_out, rejected, _, ok = apply_detectors(
                times, dets.astype(np.int64), raw_u, raw_e, raw_g, pool_u, pool_e, pool_g, 0,
                last, pending, float(end_ps), r.afterpulse_probability, r.dead_time_ps,
                r.afterpulse_tau_ps, r.gated, self.period_ps, self.origin_ps, self.gate_ps(),
                out_t, out_d, out_src)
            if ok:
                break
            # rare: more afterpulse cascades than the pool held; extend it (same prefix) and redo
            pool_u = np.concatenate([pool_u, rng.random(pool_u.shape[0])])
            pool_e = np.concatenate([pool_e, rng.standard_exponential(pool_e.shape[0])])
            pool_g = np.concatenate([pool_g, rng.random(pool_g.shape[0])])
        self.last, self.pending = last, pending
        self.rejected += int(rejected)
        src = out_src[:n_out]
        self.afterpulses += int(np.count_nonzero(src < 0))
        return out_t[:n_out], out_d[:n_out], src
