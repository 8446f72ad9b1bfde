"""One block through the whole distillation chain, both parties in one process.

``distill`` runs sift -> estimate -> reconcile -> verify -> finite-key length ->
amplify over one channel and returns both final keys with a report.  It is the
in-process composition used by the simulated node and the tests; two separate
processes run the same steps, each with its own half, over a TCP channel.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .amplify import amplify
from .channel import Channel
from .estimate import estimate, key_errors_by_class
from .finite_key import FiniteKeyResult, secret_key_length
from .reconcile import ReconcileReport, reconcile
from .sift import BASIS_Z, AliceRecord, BobDetections, sift
from .verify import verify

MIN_QBER = 0.005   # reconciliation is designed for at least this error rate


@dataclass
class DistillResult:
    """Final keys (equal when ``ok``) and what each step saw; no key bits in ``summary``."""

    ok: bool
    alice_key: np.ndarray
    bob_key: np.ndarray
    sifted_key_bits: int
    qber_test: float
    reconcile: ReconcileReport | None
    finite_key: FiniteKeyResult | None
    leaked_bits: int
    reason: str = ""
    summary: dict = field(default_factory=dict)


def distill(record: AliceRecord, detections: BobDetections, channel: Channel, *,
            intensities: tuple[float, ...], probabilities: tuple[float, ...],
            rng: np.random.Generator, eps_sec: float = 1e-10, eps_cor: float = 1e-15,
            finite_key_method: str = "two-decoy", reconcile_method: str = "cascade",
            reconcile_seed: int = 0, **reconcile_options) -> DistillResult:
    """Distil one block; return both secret keys (empty if no key can be extracted).

    ``intensities``/``probabilities``: Alice's mean photon numbers per intensity class
    (class 0 = signal) and how often she picks each.  ``rng``: randomness for the hash
    points and the amplification seed (seed it from the OS CSPRNG in operation).
    """
    empty = np.zeros(0, dtype=np.uint8)
    alice, bob = sift(record, detections, channel, n_classes=len(intensities))
    counts = estimate(alice, bob, channel, n_classes=len(intensities))
    z = alice.bases == BASIS_Z
    n_key = int(z.sum())
    qber_x = counts.qber_test()
    if n_key == 0 or not np.isfinite(qber_x) or qber_x >= 0.5:
        return DistillResult(False, empty, empty, n_key, qber_x, None, None, 0,
                             "no key-basis detections or no usable test-basis estimate")
    before = channel.stats.snapshot()
    fixed, rep = reconcile(alice.bits[z], bob.bits[z], max(qber_x, MIN_QBER), reconcile_method,
                           channel, seed=reconcile_seed, **reconcile_options)
    check = verify(alice.bits[z], fixed, channel, rng, eps_cor)
    leaked = channel.stats.since(before).leaked_bits
    if not check.ok:
        return DistillResult(False, empty, empty, n_key, qber_x, rep, None, leaked,
                             "verification failed: keys differ after reconciliation")
    counts = key_errors_by_class(counts, bob.intensities[z], bob.bits[z], fixed)
    fk = secret_key_length(counts.to_decoy_counts(intensities, probabilities), leaked,
                           eps_sec, eps_cor, finite_key_method)
    if fk.length == 0:
        return DistillResult(False, empty, empty, n_key, qber_x, rep, fk, leaked,
                             "finite-key bound gives no secret bits for this block")
    ka, kb = amplify(alice.bits[z], fixed, fk.length, channel, rng)
    summary = {"sifted_key_bits": n_key, "qber_test": qber_x, "qber_key": fk.qber_key,
               "leaked_bits": leaked, "rounds": rep.rounds, "efficiency": rep.efficiency,
               "secret_bits": fk.length, "phase_error_bound": fk.phi}
    return DistillResult(True, ka, kb, n_key, qber_x, rep, fk, leaked, "", summary)
