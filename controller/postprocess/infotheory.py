"""Small information-theory helpers shared by the post-processing modules."""

from __future__ import annotations

import numpy as np


def h2(p):
    """Return the binary entropy of ``p`` in bits (0 at p <= 0 or p >= 1, scalar or array)."""
    p = np.asarray(p, dtype=float)
    q = np.clip(p, 1e-300, 1.0 - 1e-16)
    out = -q * np.log2(q) - (1.0 - q) * np.log2(1.0 - q)
    out = np.where((p <= 0.0) | (p >= 1.0), 0.0, out)
    return float(out) if out.ndim == 0 else out
