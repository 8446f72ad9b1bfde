"""A KME without HTTP: ETSI GS QKD 014 semantics over a :class:`KeyStore` and a :class:`PeerKME`.

``enc_keys`` (master side): claim keys locally, have the peer KME reserve the same key IDs for
``(master, slave)`` through :meth:`PeerKME.reserve`, then deliver.  If the peer refuses, the claim
is released; if the peer cannot be reached, the claim is kept (the outcome on the peer is unknown,
so the keys are given up rather than risk serving one twice).  ``dec_keys`` (slave side) hands out
keys the peer reserved here for that slave.  Errors are :class:`ApiError` with the status code and
the spec's message texts; none carries key material.
"""

from __future__ import annotations

import base64
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from . import hybrid
from .store import KeyStore, KeysUnavailable, NotTheSlave, PoolShort

NOT_FOUND = "one or more keys specified are not found on KME"
SIZE_NOT_MULTIPLE = "size shall be a multiple of 8"
EXT_MANDATORY = "not all extension_mandatory parameters are supported"


class ApiError(Exception):
    """An ETSI 014 error: HTTP ``status``, ``message`` and optional ``details`` (list of objects)."""

    def __init__(self, status: int, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details

    def body(self) -> dict:
        """Return the spec's Error object."""
        return {"message": self.message} | ({"details": self.details} if self.details else {})


# -- the agreement between the two KMEs of a link -----------------------------------------------------

@dataclass(frozen=True)
class ReserveRequest:
    """Ask the peer KME to reserve ``key_ids`` for ``(master_sae, slave_sae)``.

    ``kem_ek`` is the ML-KEM-768 encapsulation key of a hybrid request (``None`` otherwise).
    """

    source_kme_id: str
    key_ids: tuple[str, ...]
    master_sae: str
    slave_sae: str
    size_bits: int
    kem_ek: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ReserveReply:
    """The peer's agreement: the ML-KEM-768 ciphertext for a hybrid request (``None`` otherwise)."""

    kem_ct: bytes | None = field(default=None, repr=False)


class PeerKMEError(Exception):
    """The peer KME did not reserve the keys."""


class PeerRefused(PeerKMEError):
    """The peer answered no (keys not available there, or a configuration mismatch); nothing reserved.

    ``unavailable`` lists the key IDs the peer does not hold as available (empty for other reasons).
    """

    def __init__(self, message: str, unavailable: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.unavailable = list(unavailable)


class PeerUnavailable(PeerKMEError):
    """The peer did not answer; whether it reserved the keys is unknown."""


class PeerKME(ABC):
    """The other KME of the link, as seen by the ``enc_keys`` path."""

    @abstractmethod
    def reserve(self, request: ReserveRequest) -> ReserveReply:
        """Reserve ``request.key_ids`` on the peer for the pair, all or none.

        Raises :class:`PeerRefused` if the peer reserved nothing, :class:`PeerUnavailable` if the
        outcome is unknown.
        """

    def close(self) -> None:
        """Release connections (nothing by default)."""


class LocalPeerKME(PeerKME):
    """The peer KME in the same process (tests, the demo): calls its :meth:`KME.handle_reserve`."""

    def __init__(self, peer: "KME"):
        self.peer = peer

    def reserve(self, request: ReserveRequest) -> ReserveReply:
        return self.peer.handle_reserve(request)


# -- the KME -------------------------------------------------------------------------------------

@dataclass
class KMEConfig:
    """One KME's identity and policy. Sizes are in bits and multiples of 8."""

    kme_id: str
    peer_kme_id: str
    local_saes: frozenset[str]          # SAEs attached here: masters for enc_keys, slaves for dec_keys
    remote_saes: frozenset[str]         # SAEs attached to the peer KME
    hybrid: bool = False
    max_key_per_request: int = 128
    min_key_size: int = 64
    max_key_size: int | None = None     # default: the store's key size
    newest_first: bool = False          # claim from the newest end (one KME of a link should)

    def __post_init__(self):
        self.local_saes = frozenset(self.local_saes)
        self.remote_saes = frozenset(self.remote_saes)


@dataclass
class KMECounters:
    """Keys delivered and requests refused, for metrics."""

    enc_keys_delivered: int = 0
    dec_keys_delivered: int = 0
    peer_refusals: int = 0
    peer_unavailable: int = 0
    short_pool: int = 0
    discarded: int = 0


class KME:
    """ETSI 014 operations for one KME; thread safe (the store is)."""

    def __init__(self, config: KMEConfig, store: KeyStore, peer: PeerKME | None = None):
        self.config = config
        self.store = store
        self.peer = peer
        self.counters = KMECounters()
        if config.hybrid:
            hybrid.require()
        self.max_key_size = config.max_key_size or store.key_size
        if self.max_key_size > store.key_size:
            raise ValueError(f"max_key_size {self.max_key_size} bits exceeds the stored key size "
                             f"{store.key_size} bits.")

    # -- checks -----------------------------------------------------------------------------

    def authorise(self, caller: str | None) -> str:
        """Return ``caller`` if it is an SAE of this KME, else raise a 401 :class:`ApiError`."""
        if not caller or caller not in self.config.local_saes:
            raise ApiError(401, f"SAE {caller or '(no identity)'} is not authorised on KME "
                                f"{self.config.kme_id}")
        return caller

    def _remote(self, sae: str, role: str) -> str:
        if sae not in self.config.remote_saes:
            raise ApiError(400, f"{role}_SAE_ID {sae} is not an SAE of the peer KME "
                                f"{self.config.peer_kme_id}",
                           [{f"{role}_SAE_ID": sae}, {"known": sorted(self.config.remote_saes)}])
        return sae

    def _size(self, size) -> int:
        size = self.store.key_size if size is None else size
        if isinstance(size, bool) or not isinstance(size, int):
            raise ApiError(400, "size must be an integer number of bits", [{"size": size}])
        if size % 8:
            raise ApiError(400, SIZE_NOT_MULTIPLE, [{"size": size}])
        if not self.config.min_key_size <= size <= self.max_key_size:
            raise ApiError(400, "size is out of range (sizes are in bits, multiples of 8)",
                           [{"size": size}, {"min_key_size": self.config.min_key_size},
                            {"max_key_size": self.max_key_size}])
        return size

    def _number(self, number) -> int:
        number = 1 if number is None else number
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise ApiError(400, "number must be a positive integer", [{"number": number}])
        if number > self.config.max_key_per_request:
            raise ApiError(400, "number exceeds max_key_per_request",
                           [{"number": number},
                            {"max_key_per_request": self.config.max_key_per_request}])
        return number

    # -- ETSI 014 -------------------------------------------------------------------------------

    def status(self, caller: str | None, slave_sae: str) -> dict:
        """Return the Status object for ``caller`` as master and ``slave_sae`` as slave."""
        master = self.authorise(caller)
        self._remote(slave_sae, "slave")
        pool = self.store.status()
        return {
            "source_KME_ID": self.config.kme_id, "target_KME_ID": self.config.peer_kme_id,
            "master_SAE_ID": master, "slave_SAE_ID": slave_sae,
            "key_size": self.store.key_size, "stored_key_count": pool.available,
            "max_key_count": pool.max_key_count,
            "max_key_per_request": self.config.max_key_per_request,
            "max_key_size": self.max_key_size, "min_key_size": self.config.min_key_size,
            "max_SAE_ID_count": 0,
            "status_extension": {
                "qkdnode_size_unit": "bits; every size is a multiple of 8",
                "qkdnode_hybrid": hybrid.KEM_NAME if self.config.hybrid else None,
            },
        }

    def enc_keys(self, caller: str | None, slave_sae: str, number=None, size=None) -> dict:
        """Get key: deliver ``number`` keys of ``size`` bits to the master ``caller``."""
        master = self.authorise(caller)
        self._remote(slave_sae, "slave")
        number, size = self._number(number), self._size(size)
        if self.peer is None:
            raise ApiError(503, f"KME {self.config.kme_id} has no peer KME connection")
        for attempt in range(2):
            try:
                ids = self.store.claim(number, size, master, slave_sae,
                                       newest_first=self.config.newest_first)
            except PoolShort:
                self.counters.short_pool += 1
                raise ApiError(503, "not enough keys available on KME",
                               [{"requested": number}, {"stored_key_count": self.store.status().available}]
                               ) from None
            dk, ek = hybrid.kem_keypair() if self.config.hybrid else (None, None)
            request = ReserveRequest(self.config.kme_id, tuple(ids), master, slave_sae, size, ek)
            try:
                reply = self.peer.reserve(request)
                break
            except PeerRefused as exc:
                self.counters.peer_refusals += 1
                # Nothing was reserved there.  Keys the peer does not hold as available are given
                # up on this side too (a store gap, or the peer's own master claimed them); the
                # others go back to the pool.
                gone = [k for k in ids if k in set(exc.unavailable)]
                if gone:
                    self.counters.discarded += self.store.discard(gone)
                self.store.release([k for k in ids if k not in set(gone)])
                if attempt:
                    raise ApiError(503, f"peer KME {self.config.peer_kme_id} refused the keys; "
                                        f"retry the request") from None
            except PeerKMEError:
                self.counters.peer_unavailable += 1
                raise ApiError(503, f"peer KME {self.config.peer_kme_id} is unreachable; "
                                    f"retry later") from None
        secret = None
        if self.config.hybrid:
            try:
                secret = hybrid.kem_decapsulate(dk, reply.kem_ct or b"")
            except hybrid.HybridError:
                raise ApiError(503, f"peer KME {self.config.peer_kme_id} sent no valid ML-KEM "
                                    f"ciphertext; check that hybrid mode is on at both KMEs") from None
        keys = self.store.deliver_claimed(ids)
        self.counters.enc_keys_delivered += len(keys)
        return self._container(keys, secret)

    def dec_keys(self, caller: str | None, master_sae: str, key_ids: list[str]) -> dict:
        """Get key with key IDs: deliver keys the peer reserved here for ``(master_sae, caller)``."""
        slave = self.authorise(caller)
        self._remote(master_sae, "master")
        if not key_ids:
            raise ApiError(400, "key_IDs must name at least one key")
        if len(key_ids) > self.config.max_key_per_request:
            raise ApiError(400, "number of key_IDs exceeds max_key_per_request",
                           [{"max_key_per_request": self.config.max_key_per_request}])
        bad = [k for k in key_ids if not _is_uuid(k)]
        if bad:
            raise ApiError(400, NOT_FOUND, [{"key_ID": k} for k in bad])
        try:
            keys = self.store.deliver_to_slave(key_ids, master_sae, slave)
        except NotTheSlave:
            raise ApiError(401, f"SAE {slave} is not the slave SAE these keys were reserved for") \
                from None
        except KeysUnavailable as exc:
            raise ApiError(400, NOT_FOUND, [{"key_ID": k} for k in exc.key_ids]) from None
        self.counters.dec_keys_delivered += len(keys)
        return self._container(keys, None)

    # -- the peer's side of the agreement -----------------------------------------------------

    def handle_reserve(self, request: ReserveRequest) -> ReserveReply:
        """Reserve keys here for a pair on the peer KME's request, all or none (raises PeerRefused)."""
        if request.source_kme_id != self.config.peer_kme_id:
            raise PeerRefused(f"KME {request.source_kme_id} is not this KME's peer "
                              f"({self.config.peer_kme_id})")
        if request.master_sae not in self.config.remote_saes or \
                request.slave_sae not in self.config.local_saes:
            raise PeerRefused(f"pair {request.master_sae} -> {request.slave_sae} is not served by "
                              f"this link")
        if (request.kem_ek is not None) != self.config.hybrid:
            raise PeerRefused(f"hybrid mode mismatch: KME {self.config.kme_id} has hybrid "
                              f"{'on' if self.config.hybrid else 'off'}")
        ct = secret = None
        if request.kem_ek is not None:
            try:
                secret, ct = hybrid.kem_encapsulate(request.kem_ek)
            except hybrid.HybridError as exc:
                raise PeerRefused(str(exc)) from None
        try:
            self.store.reserve_for_slave(list(request.key_ids), request.master_sae,
                                         request.slave_sae, request.size_bits, secret)
        except KeysUnavailable as exc:
            raise PeerRefused(str(exc), exc.key_ids) from None
        return ReserveReply(ct)

    @staticmethod
    def _container(keys, secret: bytes | None) -> dict:
        out = []
        for k in keys:
            pqc = secret if secret is not None else k.pqc_secret
            material = hybrid.combine(k.material, pqc, k.key_id, k.master_sae, k.slave_sae,
                                      k.req_bits)
            out.append({"key_ID": k.key_id, "key": base64.b64encode(material).decode("ascii")})
        return {"keys": out}


def _is_uuid(value) -> bool:
    try:
        uuid.UUID(str(value))
        return isinstance(value, str)
    except ValueError:
        return False
