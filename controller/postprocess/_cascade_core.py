"""Numba kernels of Cascade: permutations, parity oracles and Bob's bisection engine.

Everything here is index arithmetic on arrays; the protocol (who sends what) lives
in :mod:`cascade`.  Conventions: pass ``p`` permutes the key with ``perm[p]``
(``perm[p][i]`` = key index at permuted position ``i``; ``pos[p]`` is its inverse)
and cuts the permuted key into blocks of ``k[p]`` bits.  A block's sub-blocks form
a binary tree (heap numbering, root 0, children 2n+1 / 2n+2, split at the middle);
``cache`` holds Alice's parity + 1 of every tree node Bob has learned (0 = unknown, so a
zeroed array is an empty cache whose pages are touched only where used; -1 = asked).

A query row (pass, lo, hi) asks the parity of the permuted range [lo, hi).  A plane query
(pass + (t + 1) * PLANE, lo, hi) asks the parity of the positions whose offset in their
half of the range ([lo, mid) or [mid, hi), mid = lo + (hi - lo) // 2) has bit t set
(syndrome decoding, see :func:`advance`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
PLANE = 1 << 16          # plane queries carry (t + 1) * PLANE in the pass column; passes < PLANE
WL_COLS = 8              # worklist row: pass, block, node, lo, hi, waiting, plane answers at, planes


@njit(cache=True)
def splitmix_permutation(n, seed):
    """Return a permutation of range(n) (int32) from a 64-bit seed (Fisher-Yates, splitmix64)."""
    perm = np.arange(n, dtype=np.int32)
    state = np.uint64(seed)
    for i in range(n - 1, 0, -1):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        z = state
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(i + 1))
        t = perm[i]
        perm[i] = perm[j]
        perm[j] = t
    return perm


@njit(cache=True)
def inverse_permutation(perm):
    """Return pos with pos[perm[i]] = i."""
    pos = np.empty_like(perm)
    for i in range(perm.size):
        pos[perm[i]] = i
    return pos


@njit(cache=True)
def prefix_parity(bits, perm):
    """Return px (uint8, n+1) with px[i] = parity of bits[perm[:i]] (Alice's oracle)."""
    n = perm.size
    px = np.zeros(n + 1, dtype=np.uint8)
    acc = np.uint8(0)
    for i in range(n):
        acc ^= bits[perm[i]]
        px[i + 1] = acc
    return px


@njit(cache=True)
def query_work(q, n):
    """Return how many key positions answering the rows of q reads (see answer_queries): one
    per row plus, for a plane query of bit t, its range (clipped to 0..n) >> (t + 1)."""
    work = q.shape[0]
    for i in range(q.shape[0]):
        span = min(max(q[i, 2] - q[i, 1], 0), n)
        shift = min(max(q[i, 0] // PLANE, 0), 62)
        if shift > 0:
            work += span >> shift
    return work


@njit(cache=True)
def answer_queries(px_all, q, out):
    """Write Alice's parities of permuted ranges into out (bool); q rows are (pass, lo, hi).

    A plane query (pass + (t + 1) * PLANE, lo, hi) asks the parity of the positions whose
    offset in their half ([lo, mid) or [mid, hi), mid = lo + (hi - lo) // 2) has bit t
    set; 2^t must be below hi - mid.
    Return -1, or the index of the first row that is not a range [lo, hi) of a pass
    (nothing after it is answered).
    """
    passes, n1 = px_all.shape
    for i in range(q.shape[0]):
        p, lo, hi = q[i, 0] % PLANE, q[i, 1], q[i, 2]
        t = q[i, 0] // PLANE - 1
        mid = lo + (hi - lo) // 2
        if q[i, 0] < 0 or p >= passes or lo < 0 or hi <= lo or hi >= n1 or t > 30 or (t >= 0 and (1 << t) >= hi - mid):
            return i
        if t < 0:
            out[i] = (px_all[p, hi] ^ px_all[p, lo]) == 1
            continue
        acc = 0
        step = 1 << t
        for a, e in ((lo, mid), (mid, hi)):
            s = a + step
            while s < e:
                acc ^= px_all[p, min(s + step, e)] ^ px_all[p, s]
                s += 2 * step
        out[i] = acc == 1
    return -1


@njit(cache=True)
def block_parities(px, n, k):
    """Return the parity of every block of k bits of a permuted key from its prefix parity."""
    nb = (n + k - 1) // k
    out = np.empty(nb, dtype=np.uint8)
    for b in range(nb):
        out[b] = px[min((b + 1) * k, n)] ^ px[b * k]
    return out


@njit(cache=True)
def fenwick_build(bits, perm, tree):
    """Fill ``tree`` (uint8, n+1) as a XOR Fenwick tree over bits[perm]."""
    n = perm.size
    tree[0] = 0
    for i in range(n):
        tree[i + 1] = bits[perm[i]]
    for i in range(1, n + 1):
        j = i + (i & -i)
        if j <= n:
            tree[j] ^= tree[i]


@njit(cache=True)
def _fen_prefix(tree, i):
    acc = np.uint8(0)
    while i > 0:
        acc ^= tree[i]
        i -= i & -i
    return acc


@njit(cache=True)
def _fen_flip(tree, i, n):
    i += 1
    while i <= n:
        tree[i] ^= 1
        i += i & -i


@njit(cache=True)
def _range(tree, lo, hi):
    return _fen_prefix(tree, hi) ^ _fen_prefix(tree, lo)


@njit(cache=True)
def _block_odd(p, b, n, k, fen, cache, coff, tsz, nrev):
    if b >= nrev[p]:
        return False          # Alice never disclosed this block's parity
    lo = b * k[p]
    hi = min(lo + k[p], n)
    root = cache[coff[p] + b * tsz[p]] - 1
    if root < 0:
        return False
    return (_range(fen[p], lo, hi) ^ root) == 1


@njit(cache=True)
def _push(p, b, n, k, wl, wl_n, active, aoff):
    w = wl_n[0]
    wl[w, 0] = p
    wl[w, 1] = b
    wl[w, 2] = 0
    wl[w, 3] = b * k[p]
    wl[w, 4] = min(b * k[p] + k[p], n)
    wl[w, 5] = 0
    wl[w, 6] = -1
    wl[w, 7] = 0
    wl_n[0] = w + 1
    active[aoff[p] + b] = True


@njit(cache=True)
def start_passes(first, last, y, perm, fen, k, cache, coff, tsz, nrev, active, aoff, wl, wl_n, started):
    """Build Bob's Fenwick trees for passes first..last-1 and queue their odd blocks.

    ``started``: [passes started, corrections made so far] (the second is kept by _flip).
    """
    n = y.size
    for p in range(first, last):
        fenwick_build(y, perm[p], fen[p])
    started[0] = last
    for p in range(first, last):
        nb = (n + k[p] - 1) // k[p]
        for b in range(nb):
            if _block_odd(p, b, n, k, fen, cache, coff, tsz, nrev):
                _push(p, b, n, k, wl, wl_n, active, aoff)


@njit(cache=True)
def _flip(j, y, pos, fen, k, cache, coff, tsz, nrev, active, aoff, wl, wl_n, started):
    """Correct Bob's bit j (counted in started[1]) and queue every block of a started pass
    that turned odd."""
    n = y.size
    y[j] ^= 1
    started[1] += 1
    for q in range(started[0]):
        _fen_flip(fen[q], pos[q, j], n)
    for q in range(started[0]):
        b = pos[q, j] // k[q]
        if b < nrev[q] and not active[aoff[q] + b] and _block_odd(q, b, n, k, fen, cache, coff, tsz, nrev):
            _push(q, b, n, k, wl, wl_n, active, aoff)


@njit(cache=True)
def _ask(cidx, p, lo, hi, cache, q_cidx, q_out, nq):
    """Queue a query for cache slot cidx (range [lo, hi) of pass p) unless known."""
    if cache[cidx] >= 1:
        return nq
    cache[cidx] = -1          # asked, answer pending
    q_cidx[nq] = cidx
    q_out[nq, 0] = p
    q_out[nq, 1] = lo
    q_out[nq, 2] = hi
    return nq + 1


@njit(cache=True)
def _under_way(wl, w, cache, coff, tsz):
    """Return whether worklist row w's bisection has asked anything yet."""
    p = wl[w, 0]
    return cache[coff[p] + wl[w, 1] * tsz[p] + 1] != 0


@njit(cache=True)
def _plane_parity(y, perm_p, lo, hi, t):
    """Return the parity of Bob's bits whose offset in their half of [lo, hi) has bit t set."""
    acc = np.uint8(0)
    mid = lo + (hi - lo) // 2
    for i in range(mid - lo):
        if (i >> t) & 1:
            acc ^= y[perm_p[lo + i]]
    for i in range(hi - mid):
        if (i >> t) & 1:
            acc ^= y[perm_p[mid + i]]
    return acc


@njit(cache=True)
def advance(ans, y, perm, pos, fen, k, cache, coff, tsz, nrev, active, aoff, wl, wl_n, started,
            q_cidx, q_out, wide, limit, synd):
    """Feed Alice's answers, run bisections as far as the known parities allow, and
    return the number of new queries written to q_out rows (pass, lo, hi); q_cidx holds
    the cache slot each answer fills.

    Nodes of at least ``wide`` bits are split four ways in one round (3 parities for
    2 levels instead of 2 parities in 2 rounds).  ``limit`` = 0: every odd block is
    bisected at once.  ``limit`` >= 1: only the lowest pass with odd blocks advances,
    and in passes after the first at most ``limit`` blocks at a time: an error found
    there is cascaded back before more blocks start, so a block the cascade evens costs
    nothing (bisected in parallel it would have been paid for).  A return of 0 with
    bisections left (``wl_n[0] > 0``) means "call again".

    ``synd`` > 0: an odd node of 4..synd bits in a pass after the first, or in the first
    once a later pass has started (a cascaded search), is located in one round instead of
    ~log2(size): Bob asks its left half (a range, kept in the cache) and the bit planes of
    the offsets within the halves (plane queries, ceil(log2(larger half)) of them); with
    one error left in the node they spell its position (Winnow-style syndrome decoding).
    The parities are as many as bisection asks; three or more errors in the node can give
    a wrong bit, which later passes correct like any error (an offset past the half's end
    is no flip: the bisection goes on).  Syndrome decoding stops after n corrections, so
    a frame always ends.  Return -1 once corrections pass 4 n: with consistent parities
    there are at most n + 2 n (the errors, plus each wrong syndrome bit flipped and undone),
    so Alice's parities contradict each other (altered on the way) and the cascade would
    flip bits for ever.
    Worklist rows: pass, block, node, lo, hi, waiting flag, index of the first plane answer
    (-1: none pending), planes asked.
    """
    n = y.size
    for i in range(ans.size):
        if q_cidx[i] >= 0:
            cache[q_cidx[i]] = ans[i] + 1
    for w in range(wl_n[0]):
        wl[w, 5] = 0
    pmin = np.int64(1) << 40
    room = np.int64(1) << 40
    if limit > 0:
        for w in range(wl_n[0]):
            pmin = min(pmin, wl[w, 0])
        if pmin >= 1:
            room = limit
            for w in range(wl_n[0]):
                if wl[w, 0] == pmin and _under_way(wl, w, cache, coff, tsz):
                    room -= 1
    nq = 0
    w = 0
    while w < wl_n[0]:
        if started[1] > 4 * n:
            return -1
        p = wl[w, 0]
        if wl[w, 5] == 1 or (p > pmin and wl[w, 6] < 0):     # plane answers are used at once
            w += 1
            continue
        if p == pmin and p >= 1 and not _under_way(wl, w, cache, coff, tsz):
            if room <= 0:
                w += 1
                continue
            room -= 1
        b = wl[w, 1]
        base = coff[p] + b * tsz[p]
        node = wl[w, 2]
        lo = wl[w, 3]
        hi = wl[w, 4]
        finished = False
        if wl[w, 6] >= 0:                 # plane answers arrived: decode the syndrome
            g = wl[w, 6]
            wl[w, 6] = -1
            finished = True
            if (_range(fen[p], lo, hi) ^ (cache[base + node] - 1)) == 1:
                mid = lo + (hi - lo) // 2
                left = (_range(fen[p], lo, mid) ^ (cache[base + 2 * node + 1] - 1)) == 1
                at = lo if left else mid
                end = mid if left else hi
                off = 0
                for t in range(wl[w, 7]):
                    if _plane_parity(y, perm[p], lo, hi, t) != ans[g + t]:
                        off += 1 << t
                if at + off < end:
                    _flip(perm[p, at + off], y, pos, fen, k, cache, coff, tsz, nrev, active, aoff, wl, wl_n, started)
                else:
                    finished = False         # several errors: bisect on from the known half
        while not finished:
            a_node = cache[base + node] - 1
            if (_range(fen[p], lo, hi) ^ a_node) == 0:
                finished = True      # a correction elsewhere already evened this node
                break
            if hi - lo == 1:
                _flip(perm[p, lo], y, pos, fen, k, cache, coff, tsz, nrev, active, aoff, wl, wl_n, started)
                finished = True
                break
            mid = lo + (hi - lo) // 2
            lc = 2 * node + 1
            a_left = cache[base + lc] - 1
            if a_left < 0:
                nq = _ask(base + lc, p, lo, mid, cache, q_cidx, q_out, nq)
                size = hi - lo
                if (4 <= size <= synd and (p >= 1 or started[0] >= 2) and started[1] < n):
                    wl[w, 6] = nq
                    t = 0
                    while (1 << t) < hi - mid:
                        q_cidx[nq] = -1
                        q_out[nq, 0] = p + (t + 1) * PLANE
                        q_out[nq, 1] = lo
                        q_out[nq, 2] = hi
                        nq += 1
                        t += 1
                    wl[w, 7] = t
                    wl[w, 5] = 1
                    break
                if hi - lo >= wide:
                    if mid - lo >= 2:
                        nq = _ask(base + 2 * lc + 1, p, lo, lo + (mid - lo) // 2,
                                  cache, q_cidx, q_out, nq)
                    if hi - mid >= 2:
                        nq = _ask(base + 2 * lc + 3, p, mid, mid + (hi - mid) // 2,
                                  cache, q_cidx, q_out, nq)
                wl[w, 5] = 1
                break
            if cache[base + lc + 1] < 1:
                cache[base + lc + 1] = (a_left ^ a_node) + 1
            if (_range(fen[p], lo, mid) ^ a_left) == 1:
                node, hi = lc, mid
            else:
                node, lo = lc + 1, mid
        wl[w, 2] = node
        wl[w, 3] = lo
        wl[w, 4] = hi
        if finished:
            active[aoff[p] + b] = False
            last = wl_n[0] - 1
            if w != last:
                for c in range(WL_COLS):
                    wl[w, c] = wl[last, c]
            wl_n[0] = last
            if _block_odd(p, b, n, k, fen, cache, coff, tsz, nrev):
                _push(p, b, n, k, wl, wl_n, active, aoff)
            continue      # row w now holds another bisection (or the end)
        w += 1
    return nq


@njit(cache=True)
def _known_bit(j, pos, k, cache, coff, tsz, nrev, passes, n):
    """Return Alice's bit at key index j if a one-bit node holding it is in the cache of
    any of the first ``passes`` passes (asked, or derived as the complement of a known
    sibling), else -1.  Only known nodes have known children, so each tree is walked down
    from its root along j's path while the nodes are known."""
    for p in range(passes):
        x = pos[p, j]
        b = x // k[p]
        if b >= nrev[p]:
            continue
        base = coff[p] + b * tsz[p]
        lo = b * k[p]
        hi = min(lo + k[p], n)
        node = 0
        while cache[base + node] >= 1:
            if hi - lo == 1:
                return cache[base + node] - 1
            mid = lo + (hi - lo) // 2
            if x < mid:
                node, hi = 2 * node + 1, mid
            else:
                node, lo = 2 * node + 2, mid
    return -1


@njit(cache=True)
def _alice_bit(j, pos, k, cache, coff, tsz, nrev, passes, n, y, y0):
    """Return Alice's bit at key index j if Bob knows it (a bit he corrected, or a one-bit
    node in a cache, :func:`_known_bit`), else -1.  Standard mode: every correction is final."""
    if y[j] != y0[j]:
        return np.int64(y[j])
    return _known_bit(j, pos, k, cache, coff, tsz, nrev, passes, n)


@njit(cache=True)
def drop_known(q, q_cidx, nq, perm, pos, k, cache, coff, tsz, nrev, passes, n, y, y0):
    """Answer from what Bob knows the one-bit queries of q[:nq] whose bit Alice's parities
    already gave: a bit he corrected, a one-bit node in another tree (:func:`_known_bit`),
    or the left bit of a known two-bit node whose right bit is known so.  Fill their cache
    slots, drop them from q and q_cidx (kept in order) and return how many are left to ask.
    Range queries only (no plane queries among the rows: their answers are found by
    position); ``y0`` is Bob's key before any correction."""
    out = 0
    for i in range(nq):
        p = q[i, 0]
        lo = q[i, 1]
        v = -1
        if q[i, 2] - lo == 1 and p < passes:
            v = _alice_bit(perm[p, lo], pos, k, cache, coff, tsz, nrev, passes, n, y, y0)
            if v < 0 and lo + 1 < n:
                b = lo // k[p]
                base = coff[p] + b * tsz[p]
                lc = q_cidx[i] - base
                if lc >= 1:
                    par = (lc - 1) // 2
                    plo = b * k[p]
                    phi = min(plo + k[p], n)
                    node = 0
                    while node != par and phi - plo > 1:
                        mid = plo + (phi - plo) // 2
                        if lo < mid:
                            node, phi = 2 * node + 1, mid
                        else:
                            node, plo = 2 * node + 2, mid
                    if node == par and plo == lo and phi - plo == 2 and cache[base + par] >= 1:
                        v2 = _alice_bit(perm[p, lo + 1], pos, k, cache, coff, tsz, nrev, passes, n, y, y0)
                        if v2 >= 0:
                            v = (cache[base + par] - 1) ^ v2
        if v >= 0:
            cache[q_cidx[i]] = v + 1
        else:
            q[out, 0] = q[i, 0]
            q[out, 1] = q[i, 1]
            q[out, 2] = q[i, 2]
            q_cidx[out] = q_cidx[i]
            out += 1
    return out


@njit(cache=True)
def _splitmix_word(state):
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def _popcount64(x):
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return np.int64((x * np.uint64(0x0101010101010101)) >> np.uint64(56))


@njit(cache=True)
def random_half_order(n, seed, perm, pos):
    """Fill perm (and its inverse pos) with a random-subset-first order of range(n).

    Index i is left out of the subset when bit i of the splitmix64 stream from ``seed``
    is 1 (each with probability 1/2); the subset comes first, then the rest, each in key
    order.  Return the subset size m: the block [0, m) of the order is the random subset
    itself, whose parity is a BICONF check (odd with probability exactly 1/2 for any
    nonzero error pattern); memory access stays sequential.  One branch-free sweep after
    a popcount of the stream.
    """
    words = (n + 63) // 64
    out = 0
    state = np.uint64(seed)
    for w in range(words):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        word = _splitmix_word(state)
        if w == words - 1 and n % 64:
            word &= (np.uint64(1) << np.uint64(n % 64)) - np.uint64(1)
        out += _popcount64(word)
    m = n - out                      # subset size
    state = np.uint64(seed)
    j0 = 0
    j1 = m
    for w in range(words):
        state = state + np.uint64(0x9E3779B97F4A7C15)
        word = _splitmix_word(state)
        top = min(64, n - 64 * w)
        for t in range(top):
            bit = np.int64((word >> np.uint64(t)) & np.uint64(1))
            i = 64 * w + t
            dst = j0 + bit * (j1 - j0)
            perm[dst] = i
            pos[i] = dst
            j0 += 1 - bit
            j1 += bit
    return m


@njit(cache=True)
def random_half_permutation(n, seed):
    """Return the random-subset-first order of :func:`random_half_order` (int32)."""
    perm = np.empty(n, dtype=np.int32)
    pos = np.empty(n, dtype=np.int32)
    random_half_order(n, seed, perm, pos)
    return perm


@njit(cache=True)
def _next_word(state):
    state = state + np.uint64(0x9E3779B97F4A7C15)
    return state, _splitmix_word(state)


@njit(cache=True)
def interleaved_order(first, k1, k2, seed):
    """Return an order of the key (int32) in which every block of k2 bits holds bits of
    k2 different blocks of pass 1 (``first``, cut into blocks of k1 bits; k2 at most their
    number nb, else as many different ones as the rows allow).

    Rows r = 0..k1-1 each take one position of every block of pass 1 (each block's
    positions in a shuffled order), the blocks of a row in a fresh random order, so two
    rows share no structure; the first blocks of a row are kept clear of the blocks that
    the block of k2 bits begun at the end of the previous row already holds.  All from the
    splitmix64 stream of ``seed``.  (In a uniform order two errors that pass 1 left in one
    of its blocks share a block of k2 bits with probability (k2 - 1) / (n - 1), and are then
    invisible to both passes.)
    """
    n = first.size
    nb = (n + k1 - 1) // k1
    off = np.empty(nb * k1, dtype=np.int32)
    state = np.uint64(seed)
    for j in range(nb):
        size = min(k1, n - j * k1)
        for i in range(size):
            off[j * k1 + i] = i
        for i in range(size - 1, 0, -1):              # Fisher-Yates within block j
            state, z = _next_word(state)
            t = np.int64(z % np.uint64(i + 1))
            a = off[j * k1 + i]
            off[j * k1 + i] = off[j * k1 + t]
            off[j * k1 + t] = a
    out = np.empty(n, dtype=np.int32)
    row = np.empty(nb, dtype=np.int64)
    held = np.zeros(nb, dtype=np.bool_)      # blocks in the block of k2 bits under way
    src = np.empty(n, dtype=np.int64)        # the block of pass 1 of each position
    m = 0
    for r in range(k1):
        w = 0
        for j in range(nb):
            if r < min(k1, n - j * k1):
                row[w] = j
                w += 1
        for i in range(w - 1, 0, -1):                  # a fresh order of the row's blocks
            state, z = _next_word(state)
            t = np.int64(z % np.uint64(i + 1))
            a = row[i]
            row[i] = row[t]
            row[t] = a
        room = min(k2 - m % k2, w) if m % k2 else 0      # positions left in that block
        later = room
        for i in range(room):              # swap held blocks out of the first ``room``
            if held[row[i]]:
                while later < w and held[row[later]]:
                    later += 1
                if later == w:
                    break                  # more held blocks than the row can avoid
                a = row[i]
                row[i] = row[later]
                row[later] = a
                later += 1
        for i in range(w):
            j = row[i]
            if m % k2 == 0:
                for t in range(max(m - k2, 0), m):    # a new block of k2 bits
                    held[src[t]] = False
            out[m] = first[j * k1 + off[j * k1 + r]]
            src[m] = j
            held[j] = True
            m += 1
    return out
