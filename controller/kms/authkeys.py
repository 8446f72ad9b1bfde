"""Authentication keys of the classical channel: the Wegman-Carter tag and the one-time pad pool.

The tag of a frame is ``(H_k(frame) + r_i) mod p`` with ``p = 2^127 - 1``: ``H_k`` is the
polynomial hash over GF(p) of the frame in 15-byte blocks (ε-almost-Δ-universal, ε = L/p for L
blocks), ``k`` the 16-byte hash key of the pre-shared secret (reused), ``r_i`` 128 one-time bits
(127 used) at the frame's index in the sender's direction of the :class:`AuthKeyPool` (used once).
:mod:`controller.channel` frames and checks messages with these; the errors live here so the pool
can raise them.
"""

from __future__ import annotations

import hmac
import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

from .secretfile import read_secret, write_secret

P127 = (1 << 127) - 1
PAD_BYTES = 16
HASH_KEY_BYTES = 16
PARTIES = ("alice", "bob")
MAX_SKIP = 1 << 16            # pads a peer may ask us to skip on (re)connection
CHECKPOINT = 64               # pads reserved ahead in the state file
GENERATIONS_KEPT = 16         # pad ends remembered per generation (the peer may lag behind)


class ChannelError(RuntimeError):
    """Base class of classical-channel errors."""


class AuthKeyExhausted(ChannelError):
    """No one-time key left to authenticate (or check) a message."""


# -- hashing --------------------------------------------------------------------------------------

def poly_hash(key: int, data: bytes) -> int:
    """Return the polynomial hash of ``data`` over GF(2^127 - 1) at point ``key``.

    15-byte blocks, each read little-endian with a 1 appended above its top byte (so blocks of
    different lengths differ); Horner evaluation without constant term.
    """
    h = 0
    for i in range(0, len(data), 15):
        block = data[i:i + 15]
        h = (h + int.from_bytes(block, "little") + (1 << (8 * len(block)))) * key % P127
    return h


def wc_tag(key: int, pad: bytes, data: bytes) -> bytes:
    """Return the 16-byte Wegman-Carter tag of ``data`` under hash key ``key`` and one-time ``pad``."""
    r = int.from_bytes(pad, "big") & P127
    return ((poly_hash(key, data) + r) % P127).to_bytes(16, "big")


# -- the authentication key pool -------------------------------------------------------------------

@dataclass
class AuthBudget:
    """Authentication key figures: bits consumed so far and left, per direction (``alice>bob``...)."""

    consumed_bits: int
    remaining_bits: dict[str, int]
    remaining_messages: dict[str, int]
    replenished_bits: int


class AuthKeyPool:
    """One-time pads for the tags, one stream per direction, addressed by absolute index.

    A pre-shared secret holds the 16-byte hash key then pad bytes; the pad bytes (and every
    replenishment) are split in half: first half alice->bob, second half bob->alice, so both ends
    derive the same streams.  With ``state_path`` the pool is kept in a 0600 file; the send index is
    written ``CHECKPOINT`` pads ahead before use, so a restart never reuses a pad.

    Every top-up is numbered: ``generation`` is the number of top-ups applied (0: the pre-shared
    pads only) and :meth:`top_up` applies top-up ``g`` only once, in order, so a node that
    crashed between committing a block and topping up can apply it again at restart.  The end of
    each stream after each of the last ``GENERATIONS_KEPT`` generations is remembered: when the
    peer is known to hold only generation ``peer_generation`` (it has not applied the latest
    top-up yet), :meth:`take_send` refuses pads past that generation's end, so a frame is never
    authenticated with pads the peer does not have.
    """

    def __init__(self, secret: bytes, *, state_path: str | os.PathLike | None = None):
        if len(secret) < HASH_KEY_BYTES + 2 * PAD_BYTES:
            raise ChannelError(f"the pre-shared secret has {len(secret)} bytes; expected at least "
                               f"{HASH_KEY_BYTES + 2 * PAD_BYTES} (hash key + one pad each way).")
        self._key = int.from_bytes(secret[:HASH_KEY_BYTES], "big") & P127
        if self._key in (0, 1):
            raise ChannelError("the pre-shared secret's hash key is degenerate; make a new secret.")
        self._lock = threading.RLock()
        self._pads = {"alice": bytearray(), "bob": bytearray()}   # by sending party
        self._base = {"alice": 0, "bob": 0}                        # index of the first pad held
        self._next_send = {"alice": 0, "bob": 0}
        self._floor_recv = {"alice": 0, "bob": 0}
        self._saved_send = {"alice": 0, "bob": 0}
        self._saved_recv = {"alice": 0, "bob": 0}
        self.consumed_bits = 0
        self.replenished_bits = 0
        self.generation = 0
        self.peer_generation: int | None = None      # what the peer holds, once told
        self._ends: dict[int, tuple[int, int]] = {}  # generation -> end of each stream
        self.state_path = Path(state_path) if state_path else None
        self._fingerprint = hmac.new(secret[:HASH_KEY_BYTES], b"qkdnode channel", "sha256").hexdigest()[:16]
        if self.state_path and self.state_path.exists():
            self._load()
        else:
            self._append(secret[HASH_KEY_BYTES:])
            self._ends[0] = (self._end("alice"), self._end("bob"))

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, state_path=None) -> "AuthKeyPool":
        """Load the pre-shared secret file ``path`` (mode 0600 required)."""
        return cls(read_secret(path, "pre-shared channel secret",
                               min_size=HASH_KEY_BYTES + 2 * PAD_BYTES), state_path=state_path)

    @staticmethod
    def create_secret_file(path: str | os.PathLike, n_messages: int = 4096) -> Path:
        """Write a fresh pre-shared secret for ``n_messages`` frames each way (give both ends a copy)."""
        return write_secret(path, os.urandom(HASH_KEY_BYTES + 2 * PAD_BYTES * n_messages))

    def _append(self, data: bytes) -> None:
        half = (len(data) // 2) // PAD_BYTES * PAD_BYTES
        self._pads["alice"] += data[:half]
        self._pads["bob"] += data[half:2 * half]

    def replenish(self, key_bits: bytes) -> int:
        """Add distilled key to both pad streams (call with the same bytes on both ends); return bits added.

        The next generation's top-up (:meth:`top_up` with ``generation + 1``); the caller vouches
        that the peer applies it too, so a peer known to be in step is taken to be in step after
        it.  The node uses :meth:`top_up` and tells the pool what the peer holds when it knows."""
        with self._lock:
            in_step = self.peer_generation == self.generation
            added = self.top_up(self.generation + 1, key_bits)
            if in_step:
                self.peer_generation = self.generation
            return added

    def top_up(self, generation: int, key_bits: bytes) -> int:
        """Apply top-up number ``generation`` (distilled key, the same bytes on both ends) once.

        A generation already applied adds nothing (returns 0): a node may repeat a top-up after a
        crash.  Generations apply in order; skipping one raises :class:`ChannelError`.  Returns
        the bits added; the pool (with its new generation) is saved before returning."""
        with self._lock:
            generation = int(generation)
            if generation <= self.generation:
                return 0
            if generation != self.generation + 1:
                raise ChannelError(f"pad top-up {generation} cannot follow top-up {self.generation}: "
                                   f"the top-ups in between are missing (key store and channel "
                                   f"state file {self.state_path} out of step).")
            before = sum(len(v) for v in self._pads.values())
            self._append(bytes(key_bits))
            added = 8 * (sum(len(v) for v in self._pads.values()) - before)
            self.replenished_bits += added
            self.generation = generation
            self._ends[generation] = (self._end("alice"), self._end("bob"))
            for old in sorted(self._ends)[:-GENERATIONS_KEPT]:
                del self._ends[old]
            self._save()
        return added

    def set_peer_generation(self, generation: int | None) -> None:
        """Record the top-up generation the peer holds (``None``: unknown, no limit)."""
        with self._lock:
            self.peer_generation = None if generation is None else int(generation)

    def note_peer_generation(self, generation: int) -> None:
        """The peer showed (authenticated) that it holds ``generation``: raise the known value."""
        with self._lock:
            g = int(generation)
            if self.peer_generation is None or g > self.peer_generation:
                self.peer_generation = g

    def send_limit(self, party: str) -> int | None:
        """Return the first pad index of ``party``'s stream the peer may not hold, or ``None``."""
        with self._lock:
            peer = self.peer_generation
            if peer is None or peer >= self.generation:
                return None
            if peer not in self._ends:
                raise ChannelError(f"the peer holds pad generation {peer}, {self.generation - peer} "
                                   f"top-ups behind this end (at most {GENERATIONS_KEPT} are "
                                   f"remembered): the two channel states diverged; reprovision.")
            return self._ends[peer][PARTIES.index(party)]

    def _end(self, party: str) -> int:
        return self._base[party] + len(self._pads[party]) // PAD_BYTES

    def _pad(self, party: str, index: int) -> bytes:
        off = (index - self._base[party]) * PAD_BYTES
        if index < self._base[party] or index >= self._end(party):
            raise AuthKeyExhausted(
                f"no authentication key left for {party}->{_other(party)} frame {index} "
                f"({self._end(party)} pads held): replenish the pool from distilled key, or "
                f"install a new pre-shared secret on both ends.")
        return bytes(self._pads[party][off:off + PAD_BYTES])

    def _drop_below(self, party: str, index: int) -> None:
        n = index - self._base[party]
        if n > 0:
            del self._pads[party][:n * PAD_BYTES]
            self._base[party] = index
            self.consumed_bits += 8 * PAD_BYTES * n

    def take_send(self, party: str) -> tuple[int, bytes]:
        """Return the next (index, pad) for frames sent by ``party``; the pad is gone afterwards."""
        with self._lock:
            index = self._next_send[party]
            limit = self.send_limit(party)
            if limit is not None and index >= limit:
                raise AuthKeyExhausted(
                    f"{party}->{_other(party)} frame {index} would use a pad of top-up "
                    f"{self.generation}, which the peer (at top-up {self.peer_generation}) does not "
                    f"hold yet; the pads both ends hold are used up: replenish or reprovision.")
            pad = self._pad(party, index)
            self._next_send[party] = index + 1
            if index + 1 > self._saved_send[party]:
                self._saved_send[party] = index + CHECKPOINT
                self._save()
            self._drop_below(party, index + 1)
            return index, pad

    def recv_pad(self, party: str, index: int) -> bytes:
        """Return the pad of frame ``index`` sent by ``party`` (not consumed)."""
        with self._lock:
            return self._pad(party, index)

    def burn_recv(self, party: str, upto: int) -> None:
        """Mark pads of ``party``'s frames below ``upto`` used (received, or burnt by a failure)."""
        with self._lock:
            self._floor_recv[party] = max(self._floor_recv[party], upto)
            self._drop_below(party, upto)
            if self._floor_recv[party] >= self._saved_recv[party] + CHECKPOINT:
                self._save()

    def recv_floor(self, party: str) -> int:
        """Return the lowest frame index still acceptable from ``party``."""
        return self._floor_recv[party]

    def skip_send(self, party: str, floor: int) -> None:
        """Move ``party``'s send index up to ``floor`` (the peer's receive floor)."""
        with self._lock:
            if floor > self._next_send[party]:
                if floor - self._next_send[party] > MAX_SKIP:
                    raise ChannelError(f"the peer asks to skip {floor - self._next_send[party]} "
                                       f"authentication pads (more than {MAX_SKIP}); the two ends' "
                                       f"channel state files disagree: reprovision the secret.")
                self._next_send[party] = floor
                self._drop_below(party, floor)
                self._saved_send[party] = max(self._saved_send[party], floor)
                self._save()

    def budget(self) -> AuthBudget:
        """Return the consumption counter and what is left each way."""
        with self._lock:
            rem = {f"{p}>{_other(p)}": len(self._pads[p]) * 8 for p in PARTIES}
            return AuthBudget(self.consumed_bits, rem, {k: v // (8 * PAD_BYTES) for k, v in rem.items()},
                              self.replenished_bits)

    @property
    def hash_key(self) -> int:
        return self._key

    @property
    def fingerprint(self) -> str:
        """A public name of the pre-shared secret (HMAC of its hash key), for records tied to it."""
        return self._fingerprint

    # -- persistence --------------------------------------------------------------------------

    def _save(self) -> None:
        """Write the pool: per direction, the pads from max(base, saved send index) on."""
        if not self.state_path:
            return
        starts = {p: max(self._base[p], self._saved_send[p]) for p in PARTIES}
        blobs = {p: bytes(self._pads[p][(starts[p] - self._base[p]) * PAD_BYTES:]) for p in PARTIES}
        meta = {"v": 2, "fingerprint": self._fingerprint, "consumed_bits": self.consumed_bits,
                "replenished_bits": self.replenished_bits, "base": starts,
                "saved_send": self._saved_send, "floor_recv": self._floor_recv,
                "generation": self.generation,
                "ends": [[g, *e] for g, e in sorted(self._ends.items())]}
        self._saved_recv = dict(self._floor_recv)
        header = json.dumps(meta).encode()
        write_secret(self.state_path, struct.pack(">III", len(header), len(blobs["alice"]),
                                                  len(blobs["bob"])) + header + blobs["alice"]
                     + blobs["bob"], overwrite=True)

    def _load(self) -> None:
        data = read_secret(self.state_path, "channel state file")
        lh, la, lb = struct.unpack(">III", data[:12])
        meta = json.loads(data[12:12 + lh])
        if meta.get("fingerprint") != self._fingerprint:
            raise ChannelError(f"channel state file {self.state_path} belongs to another pre-shared "
                               f"secret; remove it only if the secret was reprovisioned on both ends.")
        pos = 12 + lh
        self._pads = {"alice": bytearray(data[pos:pos + la]), "bob": bytearray(data[pos + la:pos + la + lb])}
        self._base = {p: int(meta["base"][p]) for p in PARTIES}
        self._next_send = dict(self._base)
        self._saved_send = {p: int(meta["saved_send"][p]) for p in PARTIES}
        # a frame received after the last save may have been accepted: refuse the next CHECKPOINT
        self._floor_recv = {p: int(meta["floor_recv"][p]) + CHECKPOINT for p in PARTIES}
        self._saved_recv = dict(self._floor_recv)
        self.consumed_bits = int(meta["consumed_bits"])
        self.replenished_bits = int(meta["replenished_bits"])
        self.generation = int(meta.get("generation", 0))     # v1 files: no top-up numbering yet
        self._ends = {int(g): (int(a), int(b)) for g, a, b in meta.get("ends", [])}
        self._ends.setdefault(self.generation, (self._end("alice"), self._end("bob")))


def _other(party: str) -> str:
    if party not in PARTIES:
        raise ValueError(f"unknown party {party!r}; expected 'alice' or 'bob'")
    return "bob" if party == "alice" else "alice"
