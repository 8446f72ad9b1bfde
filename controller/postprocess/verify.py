"""Key verification: a polynomial universal hash tag over the prime field GF(2^61 - 1).

The key is cut into 32-bit words m_1..m_L (plus its length) and hashed as
``sum m_i r^(L+1-i) mod p`` (Horner), p = 2^61 - 1.  Two different keys collide
for at most (L+1)/p of the random points r; ``t`` independent points push the
collision probability to ((L+1)/p)^t <= eps_cor.  Alice draws the points, sends them
with her tag through the channel (the tag is metered as leaked); Bob answers
whether his tag matches.  Tag length in bits = 61 t.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .channel import Channel
from .peer import peer_array, peer_bits

P61 = (1 << 61) - 1


@njit(cache=True)
def _mulmod61(a, b):
    m32 = np.uint64(0xFFFFFFFF)
    p = np.uint64(0x1FFFFFFFFFFFFFFF)
    a_lo, a_hi = a & m32, a >> np.uint64(32)
    b_lo, b_hi = b & m32, b >> np.uint64(32)
    lo = a_lo * b_lo
    mid = a_hi * b_lo + a_lo * b_hi
    hi = a_hi * b_hi
    # 2^64 = 8 mod p; 2^61 = 1 mod p
    x = (lo & p) + (lo >> np.uint64(61))
    x += (mid >> np.uint64(29)) + ((mid & np.uint64(0x1FFFFFFF)) << np.uint64(32))
    x += hi << np.uint64(3)
    x = (x & p) + (x >> np.uint64(61))
    x = (x & p) + (x >> np.uint64(61))
    if x >= p:
        x -= p
    return x


@njit(cache=True)
def _poly_hash(words, nbits, r):
    p = np.uint64(0x1FFFFFFFFFFFFFFF)
    h = np.uint64(0)
    for i in range(words.size):
        h = _mulmod61(h, r) + np.uint64(words[i])
        if h >= p:
            h -= p
    h = _mulmod61(h, r) + np.uint64(nbits)
    if h >= p:
        h -= p
    return h


def _words(bits: np.ndarray) -> np.ndarray:
    packed = np.packbits(np.asarray(bits, dtype=np.uint8))
    pad = (-packed.size) % 4
    if pad:
        packed = np.concatenate([packed, np.zeros(pad, dtype=np.uint8)])
    return packed.view("<u4")


def points_needed(n_bits: int, eps_cor: float) -> int:
    """Return how many independent evaluation points keep collisions <= eps_cor."""
    words = (n_bits + 31) // 32 + 1
    per_point = math.log2(P61) - math.log2(words)
    return max(1, math.ceil(math.log2(1.0 / eps_cor) / per_point))


def tag(bits: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Return the hash of ``bits`` at each evaluation point (uint64 array)."""
    w = _words(bits)
    return np.array([_poly_hash(w, np.uint64(len(bits)), np.uint64(r)) for r in points],
                    dtype=np.uint64)


def bob_matches(bits: np.ndarray, points, alice_tag, eps_cor: float) -> bool:
    """Return whether Bob's key ``bits`` has Alice's tag at her points (both received, checked:
    :func:`points_needed` of each, points in GF(2^61 - 1))."""
    t = points_needed(len(bits), eps_cor)
    points = peer_array(points, "Alice's verification points", kinds="u", size=t, hi=P61 - 1)
    alice_tag = peer_array(alice_tag, "Alice's verification tag", kinds="u", size=t)
    return bool(np.array_equal(tag(bits, points), alice_tag))


def peer_verdict(answer) -> bool:
    """Return Bob's received answer (one bit) to the verification."""
    return bool(peer_bits(answer, "Bob's verification answer", size=1)[0])


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of verification: keys equal (except with prob <= eps_cor) and tag size."""

    ok: bool
    tag_bits: int
    eps_cor: float


def verify(alice_bits: np.ndarray, bob_bits: np.ndarray, channel: Channel,
           rng: np.random.Generator, eps_cor: float = 1e-15) -> VerifyResult:
    """Compare the two keys by universal hash tags sent through ``channel``.

    ``rng`` is Alice's generator for the evaluation points (use a CSPRNG-seeded one).
    """
    if len(alice_bits) != len(bob_bits):
        raise ValueError(f"keys differ in length: {len(alice_bits)} vs {len(bob_bits)}")
    t = points_needed(len(alice_bits), eps_cor)
    points = rng.integers(0, P61, size=t, dtype=np.uint64)
    channel.send("alice", points, tag="verify")
    channel.send("alice", tag(alice_bits, points), bits=61 * t, leaks_key=True, tag="verify")
    ok = bob_matches(bob_bits, channel.recv("bob"), channel.recv("bob"), eps_cor)
    channel.send("bob", np.array([ok]), tag="verify")
    ok_alice = peer_verdict(channel.recv("alice"))
    return VerifyResult(ok_alice, 61 * t, eps_cor)
