"""Privacy amplification by (modified) Toeplitz hashing, a 2-universal family, via FFT.

The family used by :func:`amplify` is the modified Toeplitz one, y = x1 + T x2 with x1
the first m key bits, x2 the other n - m and T a random m x (n - m) Toeplitz matrix
(Hayashi and Tsurumaru, NJP 18, 065008 (2016)): still 2-universal (if x2 = 0 and x != 0,
y = x1 != 0; otherwise T x2 is uniform), with an (n - 1)-bit seed and an FFT two thirds
the size of the plain Toeplitz one.

An m x n Toeplitz matrix T over GF(2) is fixed by n + m - 1 seed bits s:
T[i, j] = s[i - j + n - 1].  Its product with the key x is the middle part of the
linear convolution of s and x, reduced mod 2: y_i = (s * x)[i + n - 1] mod 2.  The
convolution is computed with real FFTs in float64 and checked to be exact (every
value within 1/4 of an integer); inputs above ``chunk_bits`` are split column-wise
(T x = T_1 x_1 + T_2 x_2, each T_k again Toeplitz) to keep the rounding exact.

The seed is public randomness: Alice draws it and sends it through the channel.
The output length comes from :func:`finite_key.secret_key_length`.
"""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft

from .channel import Channel

CHUNK_BITS = 1 << 26


def _toeplitz_fft(seed_bits: np.ndarray, x: np.ndarray, m: int) -> np.ndarray:
    n = x.size
    length = sfft.next_fast_len(n + m - 1, real=True)
    fs = sfft.rfft(seed_bits.astype(np.float64), n=length)
    fx = sfft.rfft(x.astype(np.float64), n=length)
    fs *= fx
    del fx
    conv = sfft.irfft(fs, n=length)[n - 1:n - 1 + m]
    rounded = np.rint(conv)
    if m and float(np.max(np.abs(conv - rounded))) > 0.25:
        raise ArithmeticError("FFT convolution lost exactness; lower chunk_bits")
    return (rounded.astype(np.int64) & 1).astype(np.uint8)


def toeplitz_hash(seed_bits: np.ndarray, key_bits: np.ndarray, m: int,
                  chunk_bits: int = CHUNK_BITS) -> np.ndarray:
    """Return T x (m bits, uint8) for the Toeplitz matrix with ``seed_bits`` (n + m - 1 bits)."""
    x = np.asarray(key_bits, dtype=np.uint8)
    s = np.asarray(seed_bits, dtype=np.uint8)
    n = x.size
    if m < 0:
        raise ValueError(f"output length must be >= 0, got {m}")
    if s.size != n + m - 1 and not (m == 0 and s.size == 0):
        raise ValueError(f"Toeplitz seed must have n + m - 1 = {n + m - 1} bits, got {s.size}")
    if m == 0:
        return np.zeros(0, dtype=np.uint8)
    out = np.zeros(m, dtype=np.uint8)
    for j0 in range(0, n, chunk_bits):
        n1 = min(chunk_bits, n - j0)
        # Columns j0..j0+n1-1 form a Toeplitz block with seed s[n - j0 - n1 : ... + n1 + m - 1].
        start = n - j0 - n1
        out ^= _toeplitz_fft(s[start:start + n1 + m - 1], x[j0:j0 + n1], m)
    return out


def toeplitz_hash_naive(seed_bits: np.ndarray, key_bits: np.ndarray, m: int) -> np.ndarray:
    """Return T x by building the matrix explicitly (reference for small sizes only)."""
    n = len(key_bits)
    i = np.arange(m)[:, None]
    j = np.arange(n)[None, :]
    t = np.asarray(seed_bits, dtype=np.int64)[i - j + n - 1]
    return ((t @ np.asarray(key_bits, dtype=np.int64)) & 1).astype(np.uint8)


def seed_bits_needed(n: int, m: int) -> int:
    """Return the seed length (bits) of the modified Toeplitz hash from n to m bits."""
    return n - 1 if 0 < m < n else 0


def modified_toeplitz_hash(seed_bits: np.ndarray, key_bits: np.ndarray, m: int,
                           chunk_bits: int = CHUNK_BITS) -> np.ndarray:
    """Return x1 + T x2 (m bits): T is the m x (n - m) Toeplitz matrix of ``seed_bits``."""
    x = np.asarray(key_bits, dtype=np.uint8)
    n = x.size
    if not 0 <= m <= n:
        raise ValueError(f"output length must be between 0 and the key length {n}, got {m}")
    if m == 0 or m == n:
        return x[:m].copy()
    if len(seed_bits) != n - 1:
        raise ValueError(f"modified Toeplitz seed must have n - 1 = {n - 1} bits, got {len(seed_bits)}")
    return x[:m] ^ toeplitz_hash(seed_bits, x[m:], m, chunk_bits)


def amplify(alice_bits: np.ndarray, bob_bits: np.ndarray, m: int, channel: Channel,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shrink both (equal) keys to ``m`` secret bits; the hash seed goes Alice -> Bob."""
    n = len(alice_bits)
    seed = rng.integers(0, 2, size=seed_bits_needed(n, m), dtype=np.uint8)
    channel.send("alice", seed.astype(bool), tag="amplify")
    bob_seed = np.asarray(channel.recv("bob"), dtype=np.uint8)
    return (modified_toeplitz_hash(seed, alice_bits, m),
            modified_toeplitz_hash(bob_seed, bob_bits, m))
