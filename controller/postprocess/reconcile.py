"""Information reconciliation front end: one call, any method, leakage from the channel.

``reconcile(alice_bits, bob_bits, qber, method="cascade", channel=...)`` returns Bob's
corrected key and a :class:`ReconcileReport`.  The leak is read from the channel's
meter (what Alice disclosed), never from the algorithm's own bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .channel import Channel, LocalChannel
from .infotheory import h2

if TYPE_CHECKING:
    from .ldpc import DecodeStats

METHODS = ("cascade", "ldpc")


@dataclass(frozen=True)
class ReconcileReport:
    """What reconciliation cost: bits leaked about the key, rounds, messages, wire bits."""

    method: str
    n: int
    leaked_bits: int
    rounds: int
    messages: int
    wire_bits: int
    qber: float
    failed_frames: int = 0      # ldpc: frames Bob could not decode (their bits left uncorrected)
    decoding: DecodeStats | None = None     # ldpc: Bob's decoder iterations and CPU time

    @property
    def efficiency(self) -> float:
        """Return f = leaked / (n h(qber)) (1 is the Shannon limit)."""
        return self.leaked_bits / (self.n * h2(self.qber)) if 0 < self.qber < 0.5 else float("inf")


def reconcile(alice_bits: np.ndarray, bob_bits: np.ndarray, qber: float, method: str = "cascade",
              channel: Channel | None = None, *, seed: int = 0, **options) -> tuple[np.ndarray, ReconcileReport]:
    """Correct Bob's key towards Alice's; return (corrected key, report).

    qber: the error rate to design for (from parameter estimation), 0 < qber < 0.5.
    method: ``cascade`` (options: mode="standard"|"low-round", passes, schedule, limit,
    checks, interleave, observer) or ``ldpc`` (options: frame_bits, f_start, step_f, steps, max_retries,
    max_iter, stall, window, horizon, warm, decoder="q16"|"amin"|"sp", pre, threads, rng; ``failed_frames`` and
    ``decoding`` in the report);
    docs/postprocess.md says what each does.  seed: public randomness.
    """
    alice_bits = np.asarray(alice_bits, dtype=np.uint8)
    bob_bits = np.asarray(bob_bits, dtype=np.uint8)
    if alice_bits.ndim != 1 or alice_bits.shape != bob_bits.shape:
        raise ValueError(f"need two 1-D keys of equal length, got {alice_bits.shape} and {bob_bits.shape}")
    if not 0.0 < qber < 0.5:
        raise ValueError(f"qber must be in (0, 0.5), got {qber}")
    if method not in METHODS:
        raise ValueError(f"unknown reconciliation method {method!r}; expected one of {METHODS}")
    channel = channel if channel is not None else LocalChannel()
    before = channel.stats.snapshot()
    failed, decoding = 0, None
    if method == "cascade":
        from .cascade import cascade
        corrected = cascade(alice_bits, bob_bits, qber, channel, seed=seed, **options)
    else:
        from .ldpc import DecodeStats, ldpc
        decoding = DecodeStats()
        corrected, failed = ldpc(alice_bits, bob_bits, qber, channel, seed=seed, stats=decoding, **options)
    used = channel.stats.since(before)
    return corrected, ReconcileReport(method, int(alice_bits.size), used.leaked_bits, used.rounds,
                                      used.messages, used.bits, float(qber), failed, decoding)
