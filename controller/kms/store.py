"""The key store of one KME: SQLite in WAL mode, keys sealed with AES-256-GCM under a node key.

Each distilled block is cut into keys of ``key_size`` bits with key IDs (UUIDs) derived from the
block ID and the key's index, so the two nodes, committing the same block, get the same IDs.

A key moves ``available`` -> ``reserved`` -> ``delivered``, each step one SQL transaction whose
``UPDATE ... WHERE state = ...`` matches every row it must or is rolled back, so two requests, two
threads or two processes can never take the same key.  ``reserved`` carries the side:

- ``master``: claimed by this KME for an ``enc_keys`` call, waiting for the peer KME's agreement;
- ``slave``: reserved by the peer KME's ``enc_keys`` call for ``(master_SAE, slave_SAE)``, waiting
  for that slave's ``dec_keys``.

A delivered key's sealed material is erased; its row stays, so the key ID can never be served again.

The end of a block between the two nodes (:mod:`controller.node.runner`) is recorded in
``link_blocks``: a block is ``pending`` (Alice: key and pad top-up sealed, waiting for Bob's
decision), ``committed`` (its keys are in ``keys``, in the same transaction) or ``dropped``
(never to be committed).  A committed block's pad top-up (generation ``gen`` of the channel pool
with fingerprint ``pool``) stays sealed here until the pool has saved it, so a crash between the
key commit and the top-up is repaired at restart (:meth:`KeyStore.topups`).
A key the peer KME does not hold any more is ``discarded`` the same way (never served by either side).
Key material never appears in a log line, an exception or a ``repr``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .secretfile import SecretFileError, load_or_create_secret

AVAILABLE, RESERVED, DELIVERED, DISCARDED = "available", "reserved", "delivered", "discarded"
NODE_KEY_BYTES = 32
DEFAULT_KEY_SIZE = 256
_KEY_ID_NAMESPACE = uuid.UUID("6f1c8a56-3d3e-4e57-9d52-6b0c2f6b7a11")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blocks (
    block_id   TEXT PRIMARY KEY,
    n_keys     INTEGER NOT NULL,
    bits       INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT NOT NULL UNIQUE,
    block_id   TEXT NOT NULL REFERENCES blocks(block_id),
    size_bits  INTEGER NOT NULL CHECK (size_bits > 0 AND size_bits % 8 = 0),
    sealed     BLOB NOT NULL,
    state      TEXT NOT NULL DEFAULT 'available'
               CHECK (state IN ('available', 'reserved', 'delivered', 'discarded')),
    side       TEXT CHECK (side IN ('master', 'slave')),
    master_sae TEXT,
    slave_sae  TEXT,
    req_bits   INTEGER,
    pqc        BLOB,
    created_at REAL NOT NULL,
    changed_at REAL,
    CHECK ((state = 'available') = (side IS NULL))
);
CREATE INDEX IF NOT EXISTS keys_by_state ON keys(state, seq);
CREATE TABLE IF NOT EXISTS link_blocks (
    block_id   TEXT PRIMARY KEY,
    state      TEXT NOT NULL CHECK (state IN ('pending', 'committed', 'dropped')),
    pool       TEXT,
    gen        INTEGER,
    topup      BLOB,
    key_bits   BLOB,
    created_at REAL NOT NULL,
    changed_at REAL
);
"""
PENDING, COMMITTED, DROPPED = "pending", "committed", "dropped"


class KeyStoreError(RuntimeError):
    """The key store cannot do what was asked (bad node key, corrupt row, bad input)."""


class PoolShort(KeyStoreError):
    """Fewer available keys than requested."""


class KeysUnavailable(KeyStoreError):
    """Some of the named keys are not in the state the operation needs (unknown, taken, delivered)."""

    def __init__(self, message: str, key_ids: list[str]):
        super().__init__(message)
        self.key_ids = key_ids


class NotTheSlave(KeyStoreError):
    """The keys exist but were reserved for another slave SAE."""


@dataclass(frozen=True)
class StoredKey:
    """One key taken from the store: its ID, stored size, requested size and material."""

    key_id: str
    size_bits: int
    req_bits: int
    master_sae: str
    slave_sae: str
    material: bytes = field(repr=False)
    pqc_secret: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PoolStatus:
    """Key counts by state, available bits, capacity (keys) and fill (0..1)."""

    available: int
    reserved_master: int
    reserved_slave: int
    delivered: int
    available_bits: int
    blocks: int
    max_key_count: int
    discarded: int = 0

    @property
    def fill(self) -> float:
        """Return available keys over capacity (0..1; above 1 if over capacity)."""
        return self.available / self.max_key_count if self.max_key_count else 0.0


def derive_key_ids(block_id: str, n: int) -> list[str]:
    """Return the ``n`` key IDs of a block: UUIDv5 of (block ID, index), the same on both nodes."""
    return [str(uuid.uuid5(_KEY_ID_NAMESPACE, f"{block_id}/{i}")) for i in range(n)]


def split_block(key_bits: bytes, key_size: int) -> list[bytes]:
    """Cut a distilled block into whole keys of ``key_size`` bits (a tail shorter than that is dropped)."""
    if key_size <= 0 or key_size % 8:
        raise KeyStoreError(f"key size {key_size} bits is not a positive multiple of 8.")
    step = key_size // 8
    return [key_bits[i:i + step] for i in range(0, len(key_bits) - step + 1, step)]


class KeyStore:
    """A KME's key pool in the SQLite file ``db_path``, sealed with the node key in ``node_key_path``.

    The node key file is created (0600, atomically) if absent; an existing one with a looser mode
    is refused.  Safe to share between threads (one connection per thread) and processes.
    """

    def __init__(self, db_path: str | os.PathLike, node_key_path: str | os.PathLike, *,
                 max_key_count: int = 100_000, key_size: int = DEFAULT_KEY_SIZE):
        if key_size <= 0 or key_size % 8:
            raise KeyStoreError(f"key size {key_size} bits is not a positive multiple of 8.")
        self.path = Path(db_path)
        self.max_key_count = int(max_key_count)
        self.key_size = int(key_size)
        try:
            node_key = load_or_create_secret(node_key_path, "node key", NODE_KEY_BYTES)
        except SecretFileError as exc:
            raise KeyStoreError(f"cannot open the key store {self.path}: {exc}") from None
        self._aead = AESGCM(node_key)
        self._check = hmac.new(node_key, b"qkdnode key store v1", hashlib.sha256).hexdigest()[:32]
        del node_key
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():             # 0600 from the start; SQLite gives -wal/-shm the same
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._init_db()

    # -- connections ------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def close(self) -> None:
        """Close every connection this store opened."""
        with self._conns_lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()

    def __enter__(self) -> "KeyStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _tx(self):
        return _Transaction(self._conn())

    def _init_db(self) -> None:
        with self._tx() as db:
            db.executescript_in_tx(_SCHEMA)
            row = db.execute("SELECT value FROM meta WHERE name = 'node_key_check'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('node_key_check', ?)", (self._check,))
            elif not hmac.compare_digest(row[0], self._check):
                raise KeyStoreError(
                    f"the node key does not match the key store {self.path}: its keys were sealed "
                    f"under another node key. Use the node key file this store was created with.")

    # -- sealing ----------------------------------------------------------------------------

    def _seal(self, key_id: str, purpose: bytes, data: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data, key_id.encode() + b"|" + purpose)

    def _open(self, key_id: str, purpose: bytes, sealed: bytes) -> bytes:
        try:
            return self._aead.decrypt(sealed[:12], sealed[12:], key_id.encode() + b"|" + purpose)
        except (InvalidTag, ValueError):
            raise KeyStoreError(f"key {key_id}: sealed material fails authentication (corrupt row, "
                                f"or a row moved between key IDs); the key is unusable.") from None

    # -- filling ----------------------------------------------------------------------------

    def add_block(self, block_id: str, key_bits: bytes, *, key_size: int | None = None) -> list[str]:
        """Store a distilled block as keys of ``key_size`` bits; return their key IDs.

        The block is committed whole or not at all; committing a block ID again adds nothing and
        returns the IDs stored the first time (so a node may safely repeat a commit after a crash).
        """
        size = self.key_size if key_size is None else int(key_size)
        pieces = split_block(bytes(key_bits), size)
        return self.add_keys(block_id, list(zip(derive_key_ids(block_id, len(pieces)), pieces)))

    def add_keys(self, block_id: str, keys: list[tuple[str, bytes]]) -> list[str]:
        """Store ``(key_id, material)`` pairs from one block in one transaction; return the IDs."""
        now = time.time()
        for key_id, material in keys:
            _check_uuid(key_id)
            if not material:
                raise KeyStoreError(f"key {key_id} is empty.")
        with self._tx() as db:
            if db.execute("SELECT 1 FROM blocks WHERE block_id = ?", (block_id,)).fetchone():
                return [r[0] for r in db.execute(
                    "SELECT key_id FROM keys WHERE block_id = ? ORDER BY seq", (block_id,))]
            db.execute("INSERT INTO blocks VALUES (?, ?, ?, ?)",
                       (block_id, len(keys), sum(8 * len(m) for _, m in keys), now))
            try:
                db.executemany(
                    "INSERT INTO keys (key_id, block_id, size_bits, sealed, created_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(kid, block_id, 8 * len(m), self._seal(kid, b"raw", bytes(m)), now)
                     for kid, m in keys])
            except sqlite3.IntegrityError:
                raise KeyStoreError(f"block {block_id}: a key ID is already in the store "
                                    f"(key IDs must be unique across blocks).") from None
        return [kid for kid, _ in keys]

    # -- the end of a block between the nodes: pending, committed, dropped -----------------

    def block_state(self, block_id: str) -> str | None:
        """Return ``pending``, ``committed``, ``dropped`` or ``None`` (no record) for a link block."""
        row = self._conn().execute("SELECT state FROM link_blocks WHERE block_id = ?",
                                   (block_id,)).fetchone()
        return row[0] if row else None

    def pending_blocks(self) -> list[str]:
        """Return the IDs of the blocks prepared here and not yet committed or dropped."""
        return [r[0] for r in self._conn().execute(
            "SELECT block_id FROM link_blocks WHERE state = 'pending' ORDER BY created_at")]

    def prepare_block(self, block_id: str, key_bits: bytes, *, topup: bytes = b"",
                      gen: int | None = None, pool: str | None = None) -> None:
        """Record block ``block_id`` as pending: its key and pad top-up sealed, no key usable yet.

        Preparing a block that has a record already is refused (:class:`KeyStoreError`)."""
        now = time.time()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM link_blocks WHERE block_id = ?", (block_id,)).fetchone():
                raise KeyStoreError(f"block {block_id} was prepared, committed or dropped before.")
            db.execute("INSERT INTO link_blocks VALUES (?, 'pending', ?, ?, ?, ?, ?, NULL)",
                       (block_id, pool, gen if topup else None,
                        self._seal(block_id, b"topup", bytes(topup)) if topup else None,
                        self._seal(block_id, b"pending", bytes(key_bits)), now))

    def commit_block(self, block_id: str, key_bits: bytes, *, topup: bytes = b"",
                     gen: int | None = None, pool: str | None = None) -> list[str]:
        """Commit block ``block_id`` at once: its keys and its pad top-up, one transaction.

        Returns the key IDs; a block committed before returns its IDs again and adds nothing.
        A dropped block is refused (:class:`KeyStoreError`): the peer was told it does not exist."""
        with self._tx() as db:
            state = self._link_state(db, block_id)
            if state == DROPPED:
                raise KeyStoreError(f"block {block_id} was dropped; it cannot be committed.")
            if state == PENDING:
                raise KeyStoreError(f"block {block_id} is pending here; commit it with "
                                    f"commit_pending().")
            if state == COMMITTED:
                return self._block_ids(db, block_id)
            db.execute("INSERT INTO link_blocks VALUES (?, 'committed', ?, ?, ?, NULL, ?, ?)",
                       (block_id, pool, gen if topup else None,
                        self._seal(block_id, b"topup", bytes(topup)) if topup else None,
                        time.time(), time.time()))
            return self._insert_block(db, block_id, bytes(key_bits))

    def commit_pending(self, block_id: str) -> list[str]:
        """Commit a pending block (its keys become available, its top-up due); return its key IDs.

        Committed before: returns the IDs again.  Dropped or unknown: :class:`KeyStoreError`."""
        with self._tx() as db:
            state = self._link_state(db, block_id)
            if state == COMMITTED:
                return self._block_ids(db, block_id)
            if state != PENDING:
                raise KeyStoreError(f"block {block_id} is not pending here (state {state}).")
            sealed = db.execute("SELECT key_bits FROM link_blocks WHERE block_id = ?",
                                (block_id,)).fetchone()[0]
            key_bits = self._open(block_id, b"pending", sealed)
            db.execute("UPDATE link_blocks SET state = 'committed', key_bits = NULL, changed_at = ? "
                       "WHERE block_id = ? AND state = 'pending'", (time.time(), block_id))
            return self._insert_block(db, block_id, key_bits)

    def drop_block(self, block_id: str) -> str:
        """Drop a link block: a pending one loses its key and top-up; an unknown one is recorded as
        dropped so it can never be committed.  Returns the state after the call: ``dropped``, or
        ``committed`` for a block committed before (which is never undone)."""
        with self._tx() as db:
            state = self._link_state(db, block_id)
            if state == COMMITTED:
                return COMMITTED
            if state is None:
                db.execute("INSERT INTO link_blocks (block_id, state, created_at, changed_at) "
                           "VALUES (?, 'dropped', ?, ?)", (block_id, time.time(), time.time()))
            else:
                db.execute("UPDATE link_blocks SET state = 'dropped', key_bits = NULL, topup = NULL, "
                           "gen = NULL, changed_at = ? WHERE block_id = ?", (time.time(), block_id))
        return DROPPED

    def topups(self, pool: str) -> list[tuple[int, str, bytes]]:
        """Return the committed pad top-ups not yet forgotten for pool ``pool``: (gen, block, bits)."""
        rows = self._conn().execute(
            "SELECT gen, block_id, topup FROM link_blocks WHERE state = 'committed' AND pool = ? "
            "AND topup IS NOT NULL ORDER BY gen", (pool,)).fetchall()
        return [(int(g), b, self._open(b, b"topup", t)) for g, b, t in rows]

    def forget_topup(self, block_id: str) -> None:
        """Erase a committed block's top-up once the channel pool has saved it."""
        with self._tx() as db:
            db.execute("UPDATE link_blocks SET topup = NULL, changed_at = ? WHERE block_id = ? "
                       "AND state = 'committed'", (time.time(), block_id))

    @staticmethod
    def _link_state(db, block_id):
        row = db.execute("SELECT state FROM link_blocks WHERE block_id = ?", (block_id,)).fetchone()
        return row[0] if row else None

    @staticmethod
    def _block_ids(db, block_id):
        return [r[0] for r in db.execute("SELECT key_id FROM keys WHERE block_id = ? ORDER BY seq",
                                         (block_id,))]

    def _insert_block(self, db, block_id: str, key_bits: bytes) -> list[str]:
        """Insert a block's whole keys (none if shorter than one key) inside transaction ``db``."""
        pieces = split_block(key_bits, self.key_size)
        if not pieces:
            return []
        ids = derive_key_ids(block_id, len(pieces))
        now = time.time()
        db.execute("INSERT INTO blocks VALUES (?, ?, ?, ?)",
                   (block_id, len(pieces), sum(8 * len(m) for m in pieces), now))
        db.executemany("INSERT INTO keys (key_id, block_id, size_bits, sealed, created_at) "
                       "VALUES (?, ?, ?, ?, ?)",
                       [(kid, block_id, 8 * len(m), self._seal(kid, b"raw", m), now)
                        for kid, m in zip(ids, pieces)])
        return ids

    # -- the master's KME: claim, then deliver or release -----------------------------------

    def claim(self, number: int, req_bits: int, master_sae: str, slave_sae: str, *,
              newest_first: bool = False) -> list[str]:
        """Reserve ``number`` available keys of at least ``req_bits`` bits for a master's request.

        Raises :class:`PoolShort` if there are fewer.  ``newest_first`` takes keys from the other
        end of the pool (the two KMEs of a link claim from opposite ends to avoid collisions).
        """
        order = "DESC" if newest_first else "ASC"
        with self._tx() as db:
            ids = [r[0] for r in db.execute(
                f"SELECT key_id FROM keys WHERE state = 'available' AND size_bits >= ? "
                f"ORDER BY seq {order} LIMIT ?", (req_bits, number))]
            if len(ids) < number:
                raise PoolShort(f"{len(ids)} key(s) of >= {req_bits} bits available, "
                                f"{number} requested.")
            self._flip(db, ids, AVAILABLE, RESERVED, side="master", master=master_sae,
                       slave=slave_sae, req_bits=req_bits)
        return ids

    def release(self, key_ids: list[str]) -> None:
        """Return keys claimed by :meth:`claim` to the pool (the peer refused them)."""
        if not key_ids:
            return
        with self._tx() as db:
            n = db.executemany(
                "UPDATE keys SET state = 'available', side = NULL, master_sae = NULL, "
                "slave_sae = NULL, req_bits = NULL, changed_at = ? "
                "WHERE key_id = ? AND state = 'reserved' AND side = 'master'",
                [(time.time(), k) for k in key_ids]).rowcount
            if n != len(key_ids):
                raise KeysUnavailable(f"{len(key_ids) - n} of {len(key_ids)} key(s) were not "
                                      f"claimed here; nothing released.", key_ids)

    def discard(self, key_ids: list[str]) -> int:
        """Give up keys claimed here that the peer KME cannot reserve; return how many."""
        with self._tx() as db:
            return db.executemany(
                "UPDATE keys SET state = 'discarded', sealed = X'', pqc = NULL, changed_at = ? "
                "WHERE key_id = ? AND state = 'reserved' AND side = 'master'",
                [(time.time(), k) for k in key_ids]).rowcount

    def deliver_claimed(self, key_ids: list[str]) -> list[StoredKey]:
        """Mark claimed keys delivered and return them (each key at most once)."""
        with self._tx() as db:
            rows = self._rows(db, key_ids, "side = 'master'")
            self._flip(db, key_ids, RESERVED, DELIVERED, where_side="master")
        return [self._unseal_row(r) for r in rows]

    # -- the slave's KME: reserve for a pair, deliver to that slave -------------------------

    def reserve_for_slave(self, key_ids: list[str], master_sae: str, slave_sae: str, req_bits: int,
                          pqc_secret: bytes | None = None) -> None:
        """Reserve the named available keys for ``(master, slave)``: all of them, or raise."""
        with self._tx() as db:
            short = [k for k in key_ids if not db.execute(
                "SELECT 1 FROM keys WHERE key_id = ? AND state = 'available' AND size_bits >= ?",
                (k, req_bits)).fetchone()]
            if short:
                raise KeysUnavailable(f"{len(short)} of {len(key_ids)} key(s) are not available on "
                                      f"this KME (unknown, already reserved or delivered).", short)
            self._flip(db, key_ids, AVAILABLE, RESERVED, side="slave", master=master_sae,
                       slave=slave_sae, req_bits=req_bits)
            if pqc_secret is not None:
                db.executemany("UPDATE keys SET pqc = ? WHERE key_id = ?",
                               [(self._seal(k, b"pqc", pqc_secret), k) for k in key_ids])

    def deliver_to_slave(self, key_ids: list[str], master_sae: str, caller: str) -> list[StoredKey]:
        """Deliver keys reserved for ``(master_sae, caller)`` and return them, all or none.

        Raises :class:`KeysUnavailable` for keys not reserved here for ``master_sae`` (unknown,
        never reserved, or delivered already) and :class:`NotTheSlave` when ``caller`` is not the
        slave SAE the keys were reserved for.
        """
        with self._tx() as db:
            rows = self._rows(db, key_ids, "side = 'slave' AND master_sae = ?", (master_sae,),
                              strict=False)
            found = {r["key_id"] for r in rows}
            missing = [k for k in key_ids if k not in found]
            if missing:
                raise KeysUnavailable(f"{len(missing)} of {len(key_ids)} key(s) are not reserved "
                                      f"on this KME for master SAE {master_sae}.", missing)
            if any(r["slave_sae"] != caller for r in rows):
                raise NotTheSlave(f"SAE {caller} is not the slave these keys were reserved for.")
            self._flip(db, key_ids, RESERVED, DELIVERED, where_side="slave")
        return [self._unseal_row(r) for r in rows]

    # -- helpers ------------------------------------------------------------------------------

    def _rows(self, db, key_ids, cond, params=(), strict=True):
        rows = []
        for k in key_ids:
            row = db.execute(f"SELECT * FROM keys WHERE key_id = ? AND state = 'reserved' AND {cond}",
                             (k, *params)).fetchone()
            if row is None:
                if strict:
                    raise KeysUnavailable(f"key {k} is not reserved here.", [k])
                continue
            rows.append(row)
        return rows

    @staticmethod
    def _flip(db, key_ids, old, new, *, side=None, master=None, slave=None, req_bits=None,
              where_side=None):
        """Move every key in ``key_ids`` from ``old`` to ``new`` state, or raise (rollback)."""
        if len(set(key_ids)) != len(key_ids):
            raise KeysUnavailable("the same key ID is named twice in one request.", list(key_ids))
        now = time.time()
        if new == RESERVED:
            sql = ("UPDATE keys SET state = 'reserved', side = ?, master_sae = ?, slave_sae = ?, "
                   "req_bits = ?, changed_at = ? WHERE key_id = ? AND state = 'available'")
            args = [(side, master, slave, req_bits, now, k) for k in key_ids]
        else:
            sql = ("UPDATE keys SET state = 'delivered', sealed = X'', pqc = NULL, changed_at = ? "
                   "WHERE key_id = ? AND state = 'reserved' AND side = ?")
            args = [(now, k, where_side) for k in key_ids]
        n = db.executemany(sql, args).rowcount
        if n != len(key_ids):
            raise KeysUnavailable(f"{len(key_ids) - n} of {len(key_ids)} key(s) changed state "
                                  f"under us ({old} -> {new}); nothing taken.", list(key_ids))

    def _unseal_row(self, row) -> StoredKey:
        kid = row["key_id"]
        pqc = self._open(kid, b"pqc", row["pqc"]) if row["pqc"] else None
        return StoredKey(kid, row["size_bits"], row["req_bits"], row["master_sae"],
                         row["slave_sae"], self._open(kid, b"raw", row["sealed"]), pqc)

    # -- figures ----------------------------------------------------------------------------

    def status(self) -> PoolStatus:
        """Return the pool's counts (one fast aggregate query)."""
        db = self._conn()
        counts = {(s, side): (n, bits) for s, side, n, bits in db.execute(
            "SELECT state, side, COUNT(*), COALESCE(SUM(size_bits), 0) FROM keys "
            "GROUP BY state, side")}
        blocks = db.execute("SELECT COUNT(*) FROM blocks").fetchone()[0]
        get = lambda s, side=None: counts.get((s, side), (0, 0))  # noqa: E731
        return PoolStatus(
            available=get(AVAILABLE)[0], reserved_master=get(RESERVED, "master")[0],
            reserved_slave=get(RESERVED, "slave")[0],
            delivered=get(DELIVERED, "master")[0] + get(DELIVERED, "slave")[0],
            available_bits=get(AVAILABLE)[1], discarded=get(DISCARDED, "master")[0], blocks=blocks,
            max_key_count=self.max_key_count)

    def key_state(self, key_id: str) -> str | None:
        """Return the state of one key (``None`` if unknown); for operators and tests."""
        row = self._conn().execute("SELECT state FROM keys WHERE key_id = ?", (key_id,)).fetchone()
        return row[0] if row else None

    def integrity_check(self) -> list[str]:
        """Return the problems found (empty if none): SQLite's own check, then every sealed key."""
        db = self._conn()
        problems = [r[0] for r in db.execute("PRAGMA integrity_check") if r[0] != "ok"]
        for row in db.execute("SELECT * FROM keys WHERE state IN ('available', 'reserved')"):
            try:
                self._open(row["key_id"], b"raw", row["sealed"])
            except KeyStoreError as exc:
                problems.append(str(exc))
        n_blocks = db.execute("SELECT COUNT(*) FROM blocks b WHERE n_keys != "
                              "(SELECT COUNT(*) FROM keys k WHERE k.block_id = b.block_id)").fetchone()[0]
        if n_blocks:
            problems.append(f"{n_blocks} block(s) with a key count that does not match their keys")
        return problems


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK`` on any exception); rows as sqlite3.Row."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self):
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, exc_type, exc, tb):
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False

    def execute(self, sql, params=()):
        return self.conn.execute(sql, params)

    def executemany(self, sql, seq):
        return self.conn.executemany(sql, seq)

    def executescript_in_tx(self, script):
        for stmt in script.split(";"):
            if stmt.strip():
                self.conn.execute(stmt)


def _check_uuid(key_id: str) -> None:
    try:
        uuid.UUID(key_id)
    except (ValueError, AttributeError, TypeError):
        raise KeyStoreError(f"key ID {key_id!r} is not a UUID string.") from None
