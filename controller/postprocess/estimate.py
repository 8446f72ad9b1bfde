"""Parameter estimation: counts and errors per basis and intensity class, QBER bounds.

The test (X) basis is fully disclosed: Bob sends his X-basis bits, Alice compares.
Key-basis (Z) error counts per class are known only after error correction
(:func:`key_errors_by_class`).  Results feed :class:`finite_key.DecoyCounts`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from .channel import Channel
from .finite_key import DecoyCounts
from .peer import peer_bits, peer_counts
from .sift import BASIS_X, BASIS_Z, Sifted


@dataclass(frozen=True)
class BasisCounts:
    """Detections and errors per intensity class (index = class) in each basis.

    ``m_key`` is None until error correction has told how many key bits were wrong.
    """

    n_key: np.ndarray
    n_test: np.ndarray
    m_test: np.ndarray
    m_key: np.ndarray | None = None

    def qber_test(self) -> float:
        """Return the observed test-basis error rate over all classes."""
        n = int(self.n_test.sum())
        return float(self.m_test.sum()) / n if n else float("nan")

    def to_decoy_counts(self, intensities, probabilities) -> DecoyCounts:
        """Return the counts as finite-key input (needs ``m_key`` from error correction)."""
        if self.m_key is None:
            raise ValueError("key-basis error counts unknown: run error correction and "
                             "key_errors_by_class first")
        return DecoyCounts(tuple(intensities), tuple(probabilities), tuple(self.n_key.tolist()),
                           tuple(self.m_key.tolist()), tuple(self.n_test.tolist()),
                           tuple(self.m_test.tolist()))


def count_by_class(sifted: Sifted, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Return detections per intensity class in the key basis and in the test basis."""
    z = sifted.select(BASIS_Z)
    return (np.bincount(sifted.intensities[z], minlength=n_classes)[:n_classes],
            np.bincount(sifted.intensities[~z], minlength=n_classes)[:n_classes])


def estimate(alice: Sifted, bob: Sifted, channel: Channel, n_classes: int = 3) -> BasisCounts:
    """Disclose Bob's test-basis bits to Alice; return counts and test-basis errors per class."""
    if alice.slots.shape != bob.slots.shape or not np.array_equal(alice.slots, bob.slots):
        raise ValueError("Alice's and Bob's sifted slots differ: sift both sides together")
    x = bob.select(BASIS_X)
    channel.send("bob", bob.bits[x].astype(bool), tag="estimate")
    m_test = x_errors_by_class(alice, channel.recv("alice"), n_classes)
    n_key, n_test = count_by_class(alice, n_classes)
    # Alice tells Bob the error count per class (public anyway); 32 bits each.
    channel.send("alice", m_test.astype(np.uint32), tag="estimate")
    _, bob_test = count_by_class(bob, n_classes)
    return BasisCounts(n_key, n_test, peer_counts(channel.recv("bob"), "Alice's test-basis "
                                                  "errors per class", bob_test))


def x_errors_by_class(alice: Sifted, bob_x, n_classes: int) -> np.ndarray:
    """Return Alice's test-basis errors per class against Bob's disclosed X bits ``bob_x``
    (checked: one bit per sifted X-basis slot)."""
    x = alice.select(BASIS_X)
    bob_x = peer_bits(bob_x, "Bob's test-basis bits", size=int(x.sum()))
    wrong = alice.bits[x] != bob_x
    return np.bincount(alice.intensities[x][wrong], minlength=n_classes)[:n_classes]


def key_errors_by_class(counts: BasisCounts, key_classes: np.ndarray, raw_bits: np.ndarray,
                        corrected_bits: np.ndarray) -> BasisCounts:
    """Return ``counts`` with key-basis errors per class, from Bob's flips during correction."""
    flipped = np.asarray(raw_bits, dtype=np.uint8) != np.asarray(corrected_bits, dtype=np.uint8)
    m_key = np.bincount(np.asarray(key_classes)[flipped], minlength=counts.n_key.size)
    return BasisCounts(counts.n_key, counts.n_test, counts.m_test, m_key[:counts.n_key.size])


def qber_interval(errors: int, n: int, confidence: float = 0.99) -> tuple[float, float, float]:
    """Return (estimate, lower, upper): Clopper-Pearson two-sided interval of an error rate."""
    if n <= 0:
        raise ValueError("need at least one compared bit to estimate an error rate")
    if not 0 <= errors <= n:
        raise ValueError(f"errors ({errors}) must be between 0 and n ({n})")
    alpha = 1.0 - confidence
    lo = 0.0 if errors == 0 else float(stats.beta.ppf(alpha / 2, errors, n - errors + 1))
    hi = 1.0 if errors == n else float(stats.beta.ppf(1 - alpha / 2, errors + 1, n - errors))
    return errors / n, lo, hi
