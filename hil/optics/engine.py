"""The sampler: clicks of a decoy-state BB84 link, drawing only the slots that click.

For a chunk of n slots, candidates are drawn with a geometric skip at p_max, the largest
per-slot click probability of any slot type; a candidate of type t is kept with probability
p_click(t) / p_max (thinning), which gives every slot exactly its own click probability at a cost
proportional to the number of clicks, not of slots. For a kept slot the sampler then draws, in
this order and each conditioned on "at least one click": the mixture component, the number K of
detected photons, the dark counts, and the routing of the K photons to the detectors; then
times (arrival + Gaussian jitter for photons, uniform in the gate for dark counts, the earlier
if both), Eve's knowledge, and finally dead time and afterpulses (``detectors``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .clicks import Clicks, RunResult
from .detectors import DetectorBank
from .eve import EVE_KNOWS, EVE_TAP, check_attack
from .params import N_DETECTORS, LinkConfig
from .physics import build_table, dark_probabilities

KIND_PHOTON, KIND_DARK, KIND_AFTERPULSE = 0, 1, 2
DEFAULT_CHUNK = 1 << 22


class FixedAttenuator:
    """An attenuator that just holds a value: ``attenuation_db`` (dB) and ``output_enabled``."""

    def __init__(self, attenuation_db: float = 0.0, output_enabled: bool = True):
        self.attenuation_db = attenuation_db
        self.output_enabled = output_enabled


class IIDChoices:
    """Alice's choices drawn i.i.d. from the source's probabilities, only where they matter.

    Used by ``OpticsModel.run_iid``: a candidate slot's class, basis and bit are drawn when the
    sampler looks at it, which is the same joint law as drawing every slot and cheaper.
    """

    def __init__(self, source):
        self.class_cdf = np.cumsum(source.class_probabilities)
        self.p_z = source.p_z

    def draw(self, rng, n):
        """Return (intensity class, basis, bit) arrays (int8) for n slots."""
        cls = np.searchsorted(self.class_cdf, rng.random(n) * self.class_cdf[-1], side="right")
        basis = (rng.random(n) >= self.p_z).astype(np.int8)
        return cls.astype(np.int8), basis, rng.integers(0, 2, n, dtype=np.int8)


def _pick(rng, group, cdf_flat):
    """Draw an index per row: ``cdf_flat`` holds, per group g, g + its normalised CDF."""
    return np.searchsorted(cdf_flat, group + rng.random(group.shape[0]), side="right")


def _geometric_positions(rng, n, p):
    """Return the sorted slot indices in [0, n) of independent Bernoulli(p) successes."""
    if p <= 0.0 or n == 0:
        return np.empty(0, dtype=np.int64)
    if p >= 1.0:
        return np.arange(n, dtype=np.int64)
    out = []
    pos = -1
    while pos < n - 1:
        expect = (n - 1 - pos) * p
        m = int(expect + 6.0 * np.sqrt(expect) + 16)
        steps = np.cumsum(rng.geometric(p, size=m)) + pos
        out.append(steps[steps < n])
        pos = int(steps[-1])
    return np.concatenate(out).astype(np.int64)


class OpticsModel:
    """A running link: Alice's choices in, Bob's click times per channel and sync times out.

    ``config``: a LinkConfig. ``seed``: seed of the model's numpy Generator (same seed, same
    choices, same chunking: same clicks). ``attenuator``: any object with ``attenuation_db``
    (and optionally ``output_enabled``), read before every chunk, e.g. ``SimulatedVOA`` of
    ``hil.scpi``. ``attack``: an eavesdropper from ``hil.optics.eve`` or None.
    ``detector``: optionally an object with the settings of ``hil.scpi.SimulatedDetector``
    (``efficiency_percent``, ``dead_time_us``, ``gate_mode`` 'GATED'/'FREE', ``gate_width_ns``),
    read before every chunk and applied to all four detectors; the model writes the total
    click rate of the last chunk (Hz) back to its ``count_rate_hz``.
    ``source_enabled`` may be set to False at run time (the laser is off: only dark counts).
    ``chunk_slots`` bounds the slots handled at once (memory, and how often the VOA is read).
    """

    def __init__(self, config: LinkConfig, *, seed: int, attenuator=None, attack=None,
                 detector=None, chunk_slots: int = DEFAULT_CHUNK):
        check_attack(attack)
        self.config = config
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.attenuator = attenuator if attenuator is not None else FixedAttenuator()
        self.attack = attack
        self.detector = detector
        self.source_enabled = True
        self.chunk_slots = int(chunk_slots)
        self.next_slot = 0
        t, r = config.timing, config.receiver
        self.period_ps = float(t.slot_period_ps)
        self.origin_ps = config.fibre.delay_ps() + np.asarray(r.channel_delay_ps)
        self.bank = DetectorBank(r, self.period_ps, self.origin_ps)
        self.channel_of = np.asarray(r.channel_map, dtype=np.int8)
        self.stats = {"slots": 0, "candidates": 0, "raw_clicks": 0}
        self._table_key = self._table = None

    # -- physics at the current settings ----------------------------------------------------

    def channel_loss_db(self) -> float:
        """Return the channel loss (fibre, insertion, attenuator) in dB; inf if the VOA is closed."""
        if not getattr(self.attenuator, "output_enabled", True):
            return float("inf")
        return self.config.fibre.loss_db() + float(self.attenuator.attenuation_db)

    def channel_transmittance(self) -> float:
        """Return the channel transmittance (0..1) at the current attenuator setting."""
        return 10.0 ** (-self.channel_loss_db() / 10.0)

    def table(self):
        """Return the SlotTable at the current settings (see ``physics``)."""
        mus = self.config.source.intensities
        if not self.source_enabled:
            mus = tuple(0.0 for _ in mus)
        key = (mus, self.channel_transmittance(), self.attack, self.config.receiver)
        if self._table_key != key:      # rebuilt only when a setting changed (VOA, laser, Eve)
            dark = dark_probabilities(self.config.receiver, self.period_ps)
            self._table = build_table(mus, self.config.receiver, key[1], dark, self.attack)
            self._table_key = key
        return self._table

    # -- running ----------------------------------------------------------------------------

    def run(self, bit, basis, intensity) -> RunResult:
        """Send one slot per element of the choice arrays (0/1 bit, 0=Z/1=X basis, class index).

        The slots continue from the previous call (``next_slot``). Returns the clicks and the
        sync times of the frames starting in these slots.
        """
        bit, basis, intensity = (np.asarray(a) for a in (bit, basis, intensity))
        n = bit.shape[0]
        if basis.shape[0] != n or intensity.shape[0] != n:
            raise ValueError("bit, basis and intensity need one entry per slot each")
        if n and (int(intensity.max()) >= len(self.config.source.intensities)
                  or int(intensity.min()) < 0):
            raise ValueError(f"intensity classes must be 0..{len(self.config.source.intensities) - 1}")
        parts = []
        for start in range(0, n, self.chunk_slots):
            stop = min(n, start + self.chunk_slots)

            def choices(idx, start=start):
                j = idx + start
                return intensity[j], basis[j], bit[j]

            parts.append(self._chunk(stop - start, choices))
        return RunResult.concatenate(parts)

    def run_iid(self, n_slots: int) -> RunResult:
        """Send ``n_slots`` slots with Alice's choices drawn i.i.d. (see IIDChoices)."""
        draw = IIDChoices(self.config.source)
        parts = []
        for start in range(0, n_slots, self.chunk_slots):
            parts.append(self._chunk(min(self.chunk_slots, n_slots - start),
                                     lambda idx: draw.draw(self.rng, idx.shape[0])))
        return RunResult.concatenate(parts)

    def iter_iid(self, n_slots: int):
        """Yield a RunResult per chunk for ``n_slots`` i.i.d. slots (bounded memory)."""
        draw = IIDChoices(self.config.source)
        for start in range(0, n_slots, self.chunk_slots):
            yield self._chunk(min(self.chunk_slots, n_slots - start),
                              lambda idx: draw.draw(self.rng, idx.shape[0]))

    def _apply_detector_settings(self):
        det = self.detector
        r = self.config.receiver
        new = replace(r, efficiency=det.efficiency_percent / 100.0,
                      dead_time_ps=det.dead_time_us * 1e6,
                      gated=str(det.gate_mode).upper() == "GATED",
                      gate_width_ps=det.gate_width_ns * 1e3)
        if new != r:
            self.config = replace(self.config, receiver=new)
            self.bank.receiver = new

    def _chunk(self, n: int, choices) -> RunResult:
        if self.detector is not None:
            self._apply_detector_settings()
        rng, tab = self.rng, self.table()
        s0 = self.next_slot
        self.next_slot += n
        self.stats["slots"] += n
        p_max = float(tab.p_click.max()) if tab.p_click.size else 0.0
        cand = _geometric_positions(rng, n, p_max)
        self.stats["candidates"] += int(cand.shape[0])
        cls, basis, bit = (np.asarray(a, dtype=np.int64) for a in choices(cand))
        t = 4 * cls + 2 * basis + bit
        keep = rng.random(cand.shape[0]) * p_max < tab.p_click[t]
        idx, t = cand[keep], t[keep]
        cls, basis, bit = cls[keep], basis[keep], bit[keep]
        raw = self._details(tab, t, s0 + idx)
        self.stats["raw_clicks"] += int(raw["time"].shape[0])
        alice = np.stack([bit, basis, cls])[:, raw["row"]]
        end_ps = self.next_slot * self.period_ps + float(self.origin_ps.min()) - self.period_ps / 2
        clicks = self._registered(raw, alice, end_ps)
        if self.detector is not None and n:
            self.detector.count_rate_hz = len(clicks) / (n * self.period_ps * 1e-12)
        return RunResult(clicks, self._sync(s0, self.next_slot), s0, self.next_slot)

    def _details(self, tab, t, slots):
        rng = self.rng
        m = t.shape[0]
        # component, given the slot type and a click
        w = tab.comp_weight * tab.comp_click()
        comp_flat = np.empty(w.shape[0])
        for ty in np.unique(tab.comp_type):
            sel = np.flatnonzero(tab.comp_type == ty)
            total = w[sel].sum()
            cum = np.cumsum(w[sel]) / total if total > 0 else np.linspace(0, 1, sel.size + 1)[1:]
            cum[-1] = 1.0          # exact block end: rounding must not spill into the next type
            comp_flat[sel] = ty + cum
        comp = _pick(rng, t, comp_flat)
        # K given a click: k >= 1 always clicks, k = 0 only with a dark count
        no_dark = tab.no_dark
        cond = tab.comp_pmf.copy()
        cond[:, 0] *= 1.0 - no_dark
        dead_rows = cond.sum(axis=1) <= 0          # components that never click: never picked
        cond[dead_rows, 0] = 1.0
        cond /= cond.sum(axis=1, keepdims=True)
        k_cdf = np.arange(cond.shape[0])[:, None] + np.cumsum(cond, axis=1)
        k_cdf[:, -1] = np.arange(cond.shape[0]) + 1.0
        k = _pick(rng, comp, k_cdf.ravel()) - comp * cond.shape[1]
        k = np.clip(k, 0, cond.shape[1] - 1)
        # dark counts: unconditional if a photon is detected, else at least one
        dark = rng.random((m, N_DETECTORS)) < tab.dark
        need = np.flatnonzero(k == 0)
        if need.size:
            dark[need] = self._darks_given_one(tab.dark, need.size)
        photons = rng.multinomial(k, tab.comp_route[comp]) if m else np.zeros((0, 4), np.int64)
        # times
        r = self.config.receiver
        arrival = slots[:, None] * self.period_ps + self.origin_ps[None, :]
        t_ph = arrival + (rng.standard_normal((m, N_DETECTORS)) * r.jitter_ps
                          if r.jitter_ps > 0 else 0.0)
        gate = r.gate_width_ps if r.gated else self.period_ps
        t_dk = arrival + (rng.random((m, N_DETECTORS)) - 0.5) * gate
        has_ph = photons > 0
        t_ph = np.where(has_ph, t_ph, np.inf)
        t_dk = np.where(dark, t_dk, np.inf)
        clicked = has_ph | dark
        row, det = np.nonzero(clicked)
        tp, td = t_ph[row, det], t_dk[row, det]
        time = np.minimum(tp, td)
        kind = np.where(tp <= td, KIND_PHOTON, KIND_DARK).astype(np.int8)
        # Eve
        eve_c = tab.comp_eve[comp]
        knows = eve_c == EVE_KNOWS
        tap = np.flatnonzero(eve_c == EVE_TAP)
        if tap.size:
            knows[tap] = rng.random(tap.size) < -np.expm1(-tab.comp_tap_mu[comp[tap]])
        order = np.argsort(time, kind="stable")
        return {"time": time[order], "det": det[order], "kind": kind[order],
                "slot": slots[row][order], "row": row[order], "eve": knows[row][order]}

    def _darks_given_one(self, p, n):
        """Return (n, 4) dark patterns of independent Bernoulli(p_d) conditioned on >= 1 dark."""
        rng = self.rng
        out = np.zeros((n, N_DETECTORS), dtype=bool)
        found = np.zeros(n, dtype=bool)
        for d in range(N_DETECTORS):
            rest = 1.0 - np.prod(1.0 - p[d:])
            q = np.where(found, p[d], p[d] / rest if rest > 0 else 0.0)
            out[:, d] = rng.random(n) < q
            found |= out[:, d]
        return out

    def _registered(self, raw, alice, end_ps) -> Clicks:
        n_raw = raw["time"].shape[0]
        if self.bank.active:
            times, dets, src = self.bank.process(self.rng, raw["time"], raw["det"], end_ps)
        else:
            times, dets, src = raw["time"], raw["det"], np.arange(n_raw)
        is_raw = src >= 0
        s = np.where(is_raw, src, 0)

        def of_raw(values, fill):
            # a raw click's field, or ``fill`` for afterpulses (a chunk may hold only those)
            if n_raw == 0:
                return np.full(src.shape, fill)
            return np.where(is_raw, values[s], fill)

        ap_slot = np.rint((times - self.origin_ps[dets]) / self.period_ps)
        return Clicks(time_ps=np.rint(times).astype(np.int64),
                      channel=self.channel_of[dets.astype(np.int64)],
                      detector=dets.astype(np.int8),
                      slot=np.where(is_raw, of_raw(raw["slot"], 0), ap_slot).astype(np.int64),
                      kind=of_raw(raw["kind"], KIND_AFTERPULSE).astype(np.int8),
                      eve_knows=of_raw(raw["eve"], False).astype(bool),
                      bit=of_raw(alice[0], -1).astype(np.int8),
                      basis=of_raw(alice[1], -1).astype(np.int8),
                      intensity=of_raw(alice[2], -1).astype(np.int8))

    def _sync(self, s0, s1):
        tm = self.config.timing
        f = tm.slots_per_frame
        first = -(-s0 // f)
        frames = np.arange(first, -(-s1 // f), dtype=np.int64)
        t = frames * f * self.period_ps + self.config.fibre.delay_ps() + tm.sync_offset_ps
        if tm.sync_jitter_ps > 0:
            t = t + self.rng.standard_normal(frames.shape[0]) * tm.sync_jitter_ps
        return np.rint(t).astype(np.int64)
