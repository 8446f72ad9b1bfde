"""Sifting for decoy-state BB84 with biased bases.

Order of the public discussion (each step one message through the channel):

1. Bob announces the slots where he detected something and his basis for each.
2. Alice answers with a mask: basis match *and* slot usable on her side.
3. Alice then announces the intensity class of each kept slot (only after the
   matching, so Bob's basis announcement cannot depend on it).

Double clicks are squashed to a uniformly random bit, as the security proofs of
the squashing model require (the bit is drawn from Bob's generator, never from
the data).  Basis codes: 0 = Z (key), 1 = X (test).  Intensity classes are small
integers (0 = signal, 1 = decoy, 2 = vacuum/weak decoy).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .channel import Channel
from .peer import PeerInputError, peer_array, peer_bits

BASIS_Z, BASIS_X = 0, 1
CLICK_0, CLICK_1, CLICK_BOTH = 1, 2, 3


@dataclass(frozen=True)
class AliceRecord:
    """Alice's choices per slot (index = slot number): bit, basis, intensity, usable."""

    bits: np.ndarray
    bases: np.ndarray
    intensities: np.ndarray
    usable: np.ndarray


@dataclass(frozen=True)
class BobDetections:
    """Bob's detections: slot numbers (increasing), basis and bit per detection."""

    slots: np.ndarray
    bases: np.ndarray
    bits: np.ndarray


@dataclass(frozen=True)
class Sifted:
    """One side's sifted data: slot, basis, intensity class and own bit per kept slot."""

    slots: np.ndarray
    bases: np.ndarray
    intensities: np.ndarray
    bits: np.ndarray

    def select(self, basis: int) -> np.ndarray:
        """Return a boolean mask of the entries measured in ``basis``."""
        return self.bases == basis


def squash_clicks(slots, bases, clicks, rng: np.random.Generator) -> BobDetections:
    """Turn raw click patterns into detections; double clicks get a random bit.

    ``clicks`` per event: 1 = detector "0" fired, 2 = detector "1", 3 = both.
    Events with no click (0) are dropped.
    """
    slots = np.asarray(slots, dtype=np.int64)
    bases = np.asarray(bases, dtype=np.uint8)
    clicks = np.asarray(clicks, dtype=np.uint8)
    if not (slots.shape == bases.shape == clicks.shape):
        raise ValueError("slots, bases and clicks must have the same length")
    if np.any(clicks > CLICK_BOTH):
        raise ValueError("click codes are 0..3 (none, detector 0, detector 1, both)")
    keep = clicks != 0
    slots, bases, clicks = slots[keep], bases[keep], clicks[keep]
    bits = (clicks == CLICK_1).astype(np.uint8)
    double = clicks == CLICK_BOTH
    bits[double] = rng.integers(0, 2, size=int(double.sum()), dtype=np.uint8)
    return BobDetections(slots, bases, bits)


def alice_match(record: AliceRecord, slots: np.ndarray, bob_bases: np.ndarray) -> np.ndarray:
    """Return Alice's answer: True where Bob's basis matches hers and the slot is usable.

    ``slots`` and ``bob_bases`` come from Bob: slots must lie in Alice's record, one basis
    (0/1) per slot; anything else raises :class:`~.peer.PeerInputError` (a ValueError)."""
    slots = peer_array(slots, "Bob's detected slots").astype(np.int64, copy=False)
    if slots.size and (slots.min() < 0 or slots.max() >= record.bits.size):
        raise PeerInputError(f"Bob announced slots outside Alice's record "
                             f"(0..{record.bits.size - 1}): {slots.min()}..{slots.max()}")
    bob_bases = peer_bits(bob_bases, "Bob's bases", size=slots.size)
    return (record.bases[slots] == bob_bases) & record.usable[slots].astype(bool)


def bob_kept(detections: BobDetections, mask, classes, n_classes: int) -> Sifted:
    """Return Bob's sifted data from Alice's answer (``mask``, ``classes``) after checking it:
    one mask entry per detection, one intensity class (0..n_classes-1) per kept slot."""
    mask = peer_bits(mask, "Alice's sifting mask", size=detections.slots.size).astype(bool)
    classes = peer_array(classes, "Alice's intensity classes", size=int(mask.sum()), lo=0,
                         hi=n_classes - 1).astype(np.uint8)
    return Sifted(detections.slots[mask], detections.bases[mask].astype(np.uint8), classes,
                  detections.bits[mask].astype(np.uint8))


def sift(record: AliceRecord, detections: BobDetections, channel: Channel,
         n_classes: int = 3) -> tuple[Sifted, Sifted]:
    """Run the three sifting messages through ``channel``; return (Alice's, Bob's) sifted data.

    ``n_classes``: the number of intensity classes (Bob refuses a class outside them)."""
    # Bob -> Alice: detected slots and bases (slot numbers sent as 64-bit integers).
    channel.send("bob", detections.slots, tag="sift")
    channel.send("bob", detections.bases.astype(bool), tag="sift")
    slots = channel.recv("alice")
    bob_bases = channel.recv("alice")
    # Alice -> Bob: match mask, then the intensity classes of the kept slots (2 bits each).
    mask = alice_match(record, slots, bob_bases)
    kept = np.asarray(slots, dtype=np.int64)[mask]
    classes = record.intensities[kept].astype(np.uint8)
    channel.send("alice", mask, tag="sift")
    channel.send("alice", classes, bits=2 * classes.size, tag="sift")
    bob = bob_kept(detections, channel.recv("bob"), channel.recv("bob"), n_classes)
    alice = Sifted(kept, record.bases[kept].astype(np.uint8), classes,
                   record.bits[kept].astype(np.uint8))
    return alice, bob
