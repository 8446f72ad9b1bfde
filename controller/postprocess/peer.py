"""Checks on numbers and arrays received from the peer, before they size any work.

The node's channel hands block data on before its tag is checked (:mod:`controller.channel`,
``deferred``): until the peer's end-of-block tag verifies, every received value may have been
altered on the way.  A receiver therefore checks each value that drives an allocation, a loop
bound, an index, a slice, a shape or a length against what it knows itself (its own key length,
the block plan, the public parameters) and raises :class:`PeerInputError` (a ``ValueError``)
naming what was wrong and what was expected.  The node runner treats that error on unverified
data as tampering (:meth:`controller.channel.AuthChannel.suspect`).  docs/postprocess.md,
"Input from the peer", lists every such value.
"""

from __future__ import annotations

import json

import numpy as np

BITS = "biu"        # bit arrays: sent as bool, accepted as any integer array of 0s and 1s
INTS = "iu"


class PeerInputError(ValueError):
    """A value received from the peer is not what the protocol allows here."""


def peer_array(data, what: str, *, kinds: str = INTS, ndim: int = 1, size: int | None = None,
               lo: int | None = None, hi: int | None = None, cols: int | None = None) -> np.ndarray:
    """Return ``data`` as a numpy array after checking it; raise :class:`PeerInputError`.

    ``kinds``: allowed dtype kinds (numpy ``dtype.kind`` letters); ``ndim``: dimensions;
    ``size``: number of elements (rows when ``cols`` is given); ``cols``: the second
    dimension of a 2-D array; ``lo``/``hi``: inclusive bounds of every element.
    """
    if not isinstance(data, np.ndarray):
        raise PeerInputError(f"{what}: expected an array from the peer, got {type(data).__name__}")
    if data.dtype.kind not in kinds:
        raise PeerInputError(f"{what}: expected an array of {_kind_names(kinds)}, got dtype {data.dtype}")
    if data.ndim != ndim or (cols is not None and data.shape[1] != cols):
        want = f"{ndim}-D" if cols is None else f"(rows, {cols})"
        raise PeerInputError(f"{what}: expected a {want} array, got shape {data.shape}")
    got = data.shape[0] if cols is not None else data.size
    if size is not None and got != size:
        raise PeerInputError(f"{what}: expected {size} {'rows' if cols is not None else 'values'}, got {got}")
    if data.dtype.kind == "b" and (lo is None or lo <= 0) and (hi is None or hi >= 1):
        return data                     # bools are 0/1: no pass over the data (per-round path)
    if data.size and lo is not None and data.min() < lo:
        raise PeerInputError(f"{what}: values must be >= {lo}, found {data.min()}")
    if data.size and hi is not None and data.max() > hi:
        raise PeerInputError(f"{what}: values must be <= {hi}, found {data.max()}")
    return data


def peer_bits(data, what: str, size: int | None = None) -> np.ndarray:
    """Return a received bit array (1-D, 0/1, ``size`` long if given) as uint8."""
    return peer_array(data, what, kinds=BITS, size=size, lo=0, hi=1).astype(np.uint8, copy=False)


def peer_counts(data, what: str, limits: np.ndarray) -> np.ndarray:
    """Return received counts per class as int64: one per class, each 0..``limits[i]``."""
    got = peer_array(data, what, size=len(limits), lo=0).astype(np.int64)
    over = np.flatnonzero(got > np.asarray(limits))
    if over.size:
        i = int(over[0])
        raise PeerInputError(f"{what}: class {i} has {got[i]}, more than the {int(limits[i])} it "
                             f"can have")
    return got


def peer_json(data, what: str, keys: tuple[str, ...] = ()) -> dict:
    """Return a received JSON object (bytes) as a dict holding ``keys``."""
    if not isinstance(data, (bytes, bytearray)):
        raise PeerInputError(f"{what}: expected a JSON message, got {type(data).__name__}")
    try:
        obj = json.loads(bytes(data).decode())
    except ValueError as exc:          # JSONDecodeError and UnicodeDecodeError both
        raise PeerInputError(f"{what}: not a JSON message ({exc})") from None
    if not isinstance(obj, dict):
        raise PeerInputError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise PeerInputError(f"{what}: fields {missing} missing (got {sorted(obj)})")
    return obj


def peer_int(value, what: str, lo: int, hi: int | None = None) -> int:
    """Return a received JSON integer after checking ``lo <= value <= hi``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise PeerInputError(f"{what}: expected an integer, got {value!r}")
    if value < lo or (hi is not None and value > hi):
        raise PeerInputError(f"{what}: expected {lo}..{'' if hi is None else hi}, got {value}")
    return value


def _kind_names(kinds: str) -> str:
    names = {"b": "bools", "i": "signed integers", "u": "unsigned integers", "f": "floats"}
    return " or ".join(names[k] for k in kinds)
