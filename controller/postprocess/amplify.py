"""Privacy amplification with 2-universal hashing: multiply-add-shift (default) or Toeplitz.

Default family, ``method="multiply_shift"`` (evaluated with one GMP big-integer product)
------------------------------------------------------------------------------------
Bits are read as integers little-endian (bit i weighs 2^i).  The n key bits split into
x1 (the first m bits) and x2 (the other w = n - m); with W = n - 1 and a seed of
2n - m - 2 bits read as a (W bits) and b (W - m bits),

    f(x) = (x1 + h_{a,b}(x2)) mod 2^m,   h_{a,b}(x2) = ((a x2 + b) mod 2^W) >> (W - m).

Core fact (Dietzfelbinger, "Universal hashing and k-wise independent random variables
via integer arithmetic without primes", STACS 1996; restated by Thorup, "High speed
hashing for integers and strings", arXiv:1504.06804): for w-bit inputs, a, b uniform in
[0, 2^W) and W >= w + l - 1, h_{a,b} onto l bits is strongly universal: for x != y,
(h(x), h(y)) is uniform on [0, 2^l)^2.  Why: write x - y = z 2^i, z odd, i <= w - 1.
r = a y + b mod 2^W is uniform and independent of a, hence of D = a (x - y) mod 2^W,
which is a uniform multiple of 2^i (z is invertible mod 2^W).  h(y) is the top l bits of
r; h(x) is the top l bits of r + D, i.e. h(y) + (top l bits of D) + a carry from the low
bits, and the top l bits of D are uniform and independent of its low bits and of r as
long as i <= W - l, which W >= w + l - 1 guarantees.  Here l = m, w = n - m, W = n - 1.

From h to f: the seed of :func:`multiply_shift_hash` keeps only the low W - m bits of b.
The top m bits of b add the same constant mod 2^m to h(x2) and h(y2), so the difference
h(x2) - h(y2) mod 2^m, and with it the collision event, does not depend on them.  For
keys x != y: if x2 = y2 then x1 != y1 and f(x) != f(y); otherwise f(x) = f(y) iff
h(x2) - h(y2) = y1 - x1 (mod 2^m), which by strong universality has probability exactly
2^-m.  So f is 2-universal (collision probability <= 2^-m), which is what the leftover
hash lemma behind :func:`finite_key.secret_key_length` needs, as for Toeplitz hashing.
The same "x1 + hash of the rest" shortening is the one Hayashi and Tsurumaru apply to
Toeplitz matrices.  The tests check both facts exhaustively on small sizes.

Cost: one product of an (n - 1)-bit by an (n - m)-bit integer (GMP uses FFT
multiplication at these sizes) plus linear-time bit packing; the seed has 2n - m - 2
bits (Toeplitz: n - 1).

Alternative, ``method="toeplitz"``: modified Toeplitz hashing by float64 FFT
-----------------------------------------------------------------------------
y = x1 + T x2 over GF(2), T a random m x (n - m) Toeplitz matrix (Hayashi and Tsurumaru,
NJP 18, 065008 (2016)): 2-universal with an (n - 1)-bit seed.  An m x n Toeplitz matrix T
is fixed by n + m - 1 seed bits s: T[i, j] = s[i - j + n - 1], and T x is the middle of
the linear convolution of s and x mod 2, computed with real FFTs and checked to be exact
(every value within 1/4 of an integer); inputs above ``chunk_bits`` are split
column-wise (T x = T_1 x_1 + T_2 x_2) to keep the rounding exact.  It is several times
slower than the default (memory-bound FFT) and is kept as a second, independent family.

In both, the seed is public randomness: Alice draws it and sends it through the channel.
The output length comes from :func:`finite_key.secret_key_length`.
"""

from __future__ import annotations

import gmpy2
import numpy as np
from scipy import fft as sfft

from .channel import Channel
from .peer import peer_bits

CHUNK_BITS = 1 << 26
METHODS = ("multiply_shift", "toeplitz")
DEFAULT_METHOD = "multiply_shift"


def _key_array(key_bits, what: str = "key") -> np.ndarray:
    x = np.asarray(key_bits)
    if x.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of bits, got shape {x.shape}")
    if x.dtype == np.bool_:
        return x.view(np.uint8)
    if x.dtype.kind not in "iu":
        raise ValueError(f"{what} must hold bits as bool or integers 0/1, got dtype {x.dtype}")
    if x.size and (int(x.min()) < 0 or int(x.max()) > 1):
        raise ValueError(f"{what} must hold only 0 and 1, found values in [{x.min()}, {x.max()}]")
    return x.astype(np.uint8, copy=False)


def _bits_to_mpz(bits: np.ndarray):
    return gmpy2.mpz.from_bytes(np.packbits(bits, bitorder="little").tobytes(), "little")


def _mpz_to_bits(value, nbits: int) -> np.ndarray:
    raw = np.frombuffer(value.to_bytes((nbits + 7) // 8, "little"), dtype=np.uint8)
    return np.unpackbits(raw, count=nbits, bitorder="little")


def multiply_shift_seed_bits(n: int, m: int) -> int:
    """Return the seed length (bits) of the multiply-add-shift hash from n to m bits."""
    return 2 * n - m - 2 if 0 < m < n else 0


def _check_lengths(n: int, m: int) -> None:
    if not 0 <= m <= n:
        raise ValueError(f"output length must be between 0 and the key length {n}, got {m}")


def multiply_shift_hash(seed_bits: np.ndarray, key_bits: np.ndarray, m: int) -> np.ndarray:
    """Return f(x) = (x1 + ((a x2 + b) mod 2^W) >> (W - m)) mod 2^m as m bits (uint8).

    ``seed_bits`` holds :func:`multiply_shift_seed_bits` (n, m) bits: a (the first
    W = n - 1) then b (the other n - m - 1); all integers are little-endian bit strings.
    """
    x = _key_array(key_bits)
    n = x.size
    _check_lengths(n, m)
    if m == 0 or m == n:
        return x[:m].copy()
    s = _key_array(seed_bits, "seed")
    if s.size != multiply_shift_seed_bits(n, m):
        raise ValueError(f"multiply-shift seed must have 2n - m - 2 = {multiply_shift_seed_bits(n, m)} "
                         f"bits for n = {n}, m = {m}, got {s.size}")
    width = n - 1
    t = _bits_to_mpz(s[:width]) * _bits_to_mpz(x[m:])
    t += _bits_to_mpz(s[width:])
    t = gmpy2.f_mod_2exp(t, width) >> (width - m)
    t += _bits_to_mpz(x[:m])
    return _mpz_to_bits(gmpy2.f_mod_2exp(t, m), m)


def multiply_shift_hash_naive(seed_bits, key_bits, m: int) -> np.ndarray:
    """Return the same f(x) with plain Python integers, read bit by bit (reference only)."""
    def value(bits) -> int:
        return int("".join("1" if b else "0" for b in reversed(list(bits))) or "0", 2)

    n = len(key_bits)
    if m == 0 or m == n:
        return np.asarray(key_bits, dtype=np.uint8)[:m].copy()
    width = n - 1
    a, b = value(seed_bits[:width]), value(seed_bits[width:])
    x1, x2 = value(key_bits[:m]), value(key_bits[m:])
    y = (x1 + (((a * x2 + b) % (1 << width)) >> (width - m))) % (1 << m)
    return np.array([(y >> j) & 1 for j in range(m)], dtype=np.uint8)


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


def toeplitz_seed_bits(n: int, m: int) -> int:
    """Return the seed length (bits) of the modified Toeplitz hash from n to m bits."""
    return n - 1 if 0 < m < n else 0


def modified_toeplitz_hash(seed_bits: np.ndarray, key_bits: np.ndarray, m: int,
                           chunk_bits: int = CHUNK_BITS) -> np.ndarray:
    """Return x1 + T x2 (m bits): T is the m x (n - m) Toeplitz matrix of ``seed_bits``."""
    x = np.asarray(key_bits, dtype=np.uint8)
    n = x.size
    _check_lengths(n, m)
    if m == 0 or m == n:
        return x[:m].copy()
    if len(seed_bits) != n - 1:
        raise ValueError(f"modified Toeplitz seed must have n - 1 = {n - 1} bits, got {len(seed_bits)}")
    return x[:m] ^ toeplitz_hash(seed_bits, x[m:], m, chunk_bits)


def _method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown amplification method {method!r}; expected one of {', '.join(METHODS)}")
    return method


def seed_bits_needed(n: int, m: int, method: str = DEFAULT_METHOD) -> int:
    """Return the public seed length (bits) that :func:`hash_key` needs to shrink n bits to m."""
    if _method(method) == "toeplitz":
        return toeplitz_seed_bits(n, m)
    return multiply_shift_seed_bits(n, m)


def hash_key(seed_bits: np.ndarray, key_bits: np.ndarray, m: int,
             method: str = DEFAULT_METHOD) -> np.ndarray:
    """Return the m-bit hash (uint8 bits) of ``key_bits`` under the family ``method``."""
    if _method(method) == "toeplitz":
        return modified_toeplitz_hash(seed_bits, key_bits, m)
    return multiply_shift_hash(seed_bits, key_bits, m)


def draw_seed(rng: np.random.Generator, n: int, m: int, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Return a uniform public seed (uint8 bits) for shrinking n bits to m with ``method``."""
    size = seed_bits_needed(n, m, method)
    return np.unpackbits(np.frombuffer(rng.bytes((size + 7) // 8), dtype=np.uint8), count=size)


def peer_seed(seed_bits, n: int, m: int, method: str = DEFAULT_METHOD) -> np.ndarray:
    """Return Alice's received hash seed (bits) after checking its length for n -> m bits."""
    return peer_bits(seed_bits, "Alice's amplification seed", size=seed_bits_needed(n, m, method))


def amplify(alice_bits: np.ndarray, bob_bits: np.ndarray, m: int, channel: Channel,
            rng: np.random.Generator, method: str = DEFAULT_METHOD) -> tuple[np.ndarray, np.ndarray]:
    """Shrink both (equal) keys to ``m`` secret bits; the hash seed goes Alice -> Bob."""
    n = len(alice_bits)
    seed = draw_seed(rng, n, m, method)
    channel.send("alice", seed.astype(bool), tag="amplify")
    bob_seed = peer_seed(channel.recv("bob"), len(bob_bits), m, method)
    return (hash_key(seed, alice_bits, m, method), hash_key(bob_seed, bob_bits, m, method))
