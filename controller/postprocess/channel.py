"""The classical channel the interactive post-processing steps talk through.

Every message is metered here, not by the algorithm that sends it: the channel
counts messages, bits and *flights* (maximal runs of messages in one direction;
a round is two flights, rounded up) and, separately, the bits that disclose
information about the key (``leaks_key=True``, e.g. Alice's parities).

Messages are ``bytes`` or numpy arrays.  The declared ``bits`` is what the message
costs on the wire; it defaults to 8 per byte, the bit count of a boolean/uint8
bit array sent packed (1 per element), or 8 x itemsize per element otherwise.
An implementation over TCP keeps the same interface: it serialises the payload,
sends the declared bit count in its header and meters the same way.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

Payload = bytes | np.ndarray


@dataclass
class ChannelStats:
    """Traffic so far: messages, bits on the wire, bits leaked about the key, flights."""

    messages: int = 0
    bits: int = 0
    leaked_bits: int = 0
    flights: int = 0
    by_tag: dict[str, int] = field(default_factory=dict)

    @property
    def rounds(self) -> int:
        """Return round trips: two flights make one round (an odd flight counts whole)."""
        return (self.flights + 1) // 2

    def record(self, bits: int, *, leaks: bool, tag: str, new_flight: bool) -> None:
        """Count one message of ``bits`` bits (``leaks``: about the key) under ``tag``;
        ``new_flight`` when its sender differs from the previous message's."""
        self.messages += 1
        self.bits += bits
        if leaks:
            self.leaked_bits += bits
        if tag:
            self.by_tag[tag] = self.by_tag.get(tag, 0) + bits
        if new_flight:
            self.flights += 1

    def snapshot(self) -> "ChannelStats":
        """Return a copy (to compute the traffic of one protocol step by difference)."""
        return ChannelStats(self.messages, self.bits, self.leaked_bits, self.flights,
                            dict(self.by_tag))

    def since(self, before: "ChannelStats") -> "ChannelStats":
        """Return the traffic between ``before`` and now."""
        return ChannelStats(self.messages - before.messages, self.bits - before.bits,
                            self.leaked_bits - before.leaked_bits,
                            self.flights - before.flights,
                            {k: v - before.by_tag.get(k, 0) for k, v in self.by_tag.items()})


def payload_bits(payload: Payload) -> int:
    """Return the default wire size in bits of a payload."""
    if isinstance(payload, (bytes, bytearray)):
        return 8 * len(payload)
    arr = np.asarray(payload)
    if arr.dtype == np.bool_:
        return int(arr.size)
    return int(arr.size * arr.itemsize * 8)


class Channel(Protocol):
    """Two-party authenticated classical channel between ``alice`` and ``bob``."""

    stats: ChannelStats

    def send(self, sender: str, payload: Payload, *, bits: int | None = None,
             leaks_key: bool = False, tag: str = "") -> None:
        """Send ``payload`` from ``sender`` to the other party and meter it."""

    def recv(self, receiver: str) -> Payload:
        """Return the oldest message addressed to ``receiver``."""


class LocalChannel:
    """In-process channel: two FIFO queues, full metering, copies of array payloads."""

    PARTIES = ("alice", "bob")

    def __init__(self) -> None:
        self.stats = ChannelStats()
        self._queues = {p: deque() for p in self.PARTIES}
        self._last_sender: str | None = None

    def _other(self, party: str) -> str:
        if party not in self.PARTIES:
            raise ValueError(f"unknown party {party!r}; expected 'alice' or 'bob'")
        return "bob" if party == "alice" else "alice"

    def send(self, sender: str, payload: Payload, *, bits: int | None = None,
             leaks_key: bool = False, tag: str = "") -> None:
        """Send ``payload`` from ``sender``; ``bits`` overrides the metered size."""
        receiver = self._other(sender)
        if isinstance(payload, np.ndarray):
            payload = payload.copy()
        elif not isinstance(payload, (bytes, bytearray)):
            raise TypeError(f"channel payloads are bytes or numpy arrays, got {type(payload).__name__}")
        n = payload_bits(payload) if bits is None else int(bits)
        if n < 0:
            raise ValueError(f"declared bit count must be >= 0, got {n}")
        self.stats.record(n, leaks=leaks_key, tag=tag, new_flight=sender != self._last_sender)
        self._last_sender = sender
        self._queues[receiver].append(payload)

    def recv(self, receiver: str) -> Payload:
        """Return the oldest message for ``receiver`` (raises if none is waiting)."""
        self._other(receiver)
        q = self._queues[receiver]
        if not q:
            raise RuntimeError(f"no message waiting for {receiver}: protocol out of step")
        return q.popleft()

    def pending(self, receiver: str) -> int:
        """Return the number of undelivered messages for ``receiver``."""
        return len(self._queues[receiver])
