"""Quasi-cyclic LDPC codes for reconciliation: seeded base graphs lifted by circulant shifts.

A code is an ``mb`` x ``nb`` base matrix lifted by Z (see ``_ldpc_core``).  Its columns are
``kb`` information columns and ``mb`` staircase columns:

* staircase column kb + j (j < mb - 1) holds identity circulants in rows j and j + 1, the
  last one rows mb - 1 (identity) and 0 (shift 1), so the m = mb Z degree-2 variables form
  one ring through all checks (an accumulator);
* information column i holds ``degree(i)`` circulants in distinct rows, rows picked with the
  fewest entries so far (check degrees differ by at most one), each shift drawn at random
  among all Z shifts closing no 4-cycle in the lifted graph (a base 4-cycle through entries
  s1, s2, s3, s4 lifts to 4-cycles iff s1 - s2 + s3 - s4 = 0 mod Z); if every shift closes
  one, among those closing the fewest, which are counted in ``QCCode.four_cycles``.

Everything is drawn from ``numpy.random.default_rng([seed, kb, mb, Z])``: both parties
build the same code from public numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Information-column degrees (node fractions) by base-code rate kb / (kb + mb): the first row
# whose minimum rate the code reaches.  Optimised by density evolution for the BSC
# (``ldpc_design``, then the best on 10^5-bit frames: 2 % and 5 % the first, 8 % the second); docs/BENCHMARKS.md, LDPC.
DEGREE_CAP = 70     # information degrees are capped at 70 % of the base rows (at least 3)
PROFILES = ((0.62, {3: 0.64, 10: 0.28, 40: 0.08}),
            (0.0, {3: 0.63, 10: 0.27, 30: 0.10}))
# Draws of a code's shifts (and row choices) tried for one that closes no 4-cycle: with a small
# lift (Z = 64-128) and columns of degree 40 some draws cannot avoid one, and a frame error
# rate of 6-12 % at 2 % was measured on such codes (docs/BENCHMARKS.md, "LDPC: short frames").
DRAWS = 16


@dataclass(frozen=True)
class QCCode:
    """A lifted base matrix: entries row by row (``row_ptr``, ``cols``, ``shifts``), lift ``z``."""

    kb: int
    mb: int
    z: int
    row_ptr: np.ndarray
    cols: np.ndarray
    shifts: np.ndarray
    four_cycles: int

    @property
    def nb(self) -> int:
        """Return the number of base columns."""
        return self.kb + self.mb

    @property
    def n(self) -> int:
        """Return the number of variables nb Z."""
        return self.nb * self.z

    @property
    def m(self) -> int:
        """Return the number of checks mb Z."""
        return self.mb * self.z

    def staircase(self, j: int) -> int:
        """Return the base column of staircase variable block j (rows j and j + 1)."""
        return self.kb + j

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """Return (check, variable) of every edge of the lifted graph (for tests and tools)."""
        rows = np.repeat(np.arange(self.mb), np.diff(self.row_ptr))
        z = np.arange(self.z)
        chk = (rows[:, None] * self.z + z[None, :]).ravel()
        var = (self.cols[:, None] * self.z + (z[None, :] + self.shifts[:, None]) % self.z).ravel()
        return chk, var


def _degrees(kb: int, mb: int, profile: dict[int, float], rng: np.random.Generator) -> np.ndarray:
    degs = np.array(sorted(profile), dtype=np.int64)
    counts = np.floor(np.array([profile[d] for d in degs]) * kb).astype(np.int64)
    counts[0] += kb - counts.sum()
    out = np.minimum(np.repeat(degs, counts), max(3, (DEGREE_CAP * mb) // 100))
    rng.shuffle(out)
    return out


def profile_for(kb: int, mb: int) -> dict[int, float]:
    """Return the information-column profile of ``PROFILES`` for a base code of rate kb / (kb + mb)."""
    rate = kb / (kb + mb)
    return next(p for r, p in PROFILES if rate >= r)


def build(kb: int, mb: int, z: int, seed: int, profile: dict[int, float] | None = None) -> QCCode:
    """Return the QC code of ``kb`` information and ``mb`` staircase columns lifted by ``z``
    (information-column degrees from ``profile``, by default ``profile_for(kb, mb)``).

    The first draw that closes no 4-cycle in the lifted graph, of at most ``DRAWS`` (draw 0
    from ``default_rng([seed, kb, mb, Z])``, draw i > 0 from ``[seed, kb, mb, Z, i]``); if
    every draw closes some, the draw closing the fewest (the first of those)."""
    if mb < 2 or kb < 1 or z < 2:
        raise ValueError(f"a QC code needs mb >= 2, kb >= 1, z >= 2; got mb={mb}, kb={kb}, z={z}")
    profile = profile_for(kb, mb) if profile is None else profile
    best = None
    for draw in range(DRAWS):
        code = _draw(kb, mb, z, np.random.default_rng([seed, kb, mb, z] + ([draw] if draw else [])),
                     profile)
        if best is None or code.four_cycles < best.four_cycles:
            best = code
        if best.four_cycles == 0:
            break
    return best


def _draw(kb: int, mb: int, z: int, rng: np.random.Generator, profile: dict[int, float]) -> QCCode:
    # one draw of ``build``'s code from ``rng``
    entries: list[dict[int, int]] = [dict() for _ in range(mb)]     # row -> {column: shift}
    col_rows: dict[int, list[int]] = {}
    for j in range(mb):
        c = kb + j
        if j < mb - 1:
            entries[j][c], entries[j + 1][c] = 0, 0
            col_rows[c] = [j, j + 1]
        else:
            entries[j][c], entries[0][c] = 0, 1 % z
            col_rows[c] = [j, 0]
    cycles = 0
    row_deg = np.array([len(e) for e in entries], dtype=np.int64)
    for c, d in enumerate(_degrees(kb, mb, profile, rng)):
        order = rng.permutation(mb)
        rows = order[np.argsort(row_deg[order], kind="stable")[:d]]
        col_rows[c] = []
        for r in rows:
            r = int(r)
            # (s_rc - s_rc2 + s_r2c2 - s_r2c) for every c2 in row r and r2 already in column c
            terms = [entries[r][c2] - entries[r2][c2] + entries[r2][c]
                     for c2 in entries[r] for r2 in col_rows[c] if c2 in entries[r2]]
            # base 4-cycles each shift would close (s closes one per term with s = term mod z);
            # a shift is drawn among those closing the fewest, none where possible
            bad = np.bincount(np.array(terms, dtype=np.int64) % z, minlength=z)
            allowed = np.flatnonzero(bad == bad.min())
            best, best_bad = int(allowed[rng.integers(allowed.size)]), int(bad.min())
            cycles += best_bad
            entries[r][c] = best
            col_rows[c].append(r)
            row_deg[r] += 1
    row_ptr = np.zeros(mb + 1, dtype=np.int64)
    row_ptr[1:] = np.cumsum([len(e) for e in entries])
    cols = np.array([c for e in entries for c in sorted(e)], dtype=np.int64)
    shifts = np.array([e[c] for e in entries for c in sorted(e)], dtype=np.int64)
    return QCCode(kb, mb, z, row_ptr, cols, shifts, cycles)
