"""One block's distillation, split into Alice's half and Bob's half, over a metering channel.

The post-processing functions of :mod:`controller.postprocess` play both parties in one call;
two nodes in two processes each run one half here, talking only through ``channel`` (an
:class:`~controller.channel.AuthChannel` end, or anything with the same ``send``/``recv``).
The steps and messages are those of the two-party functions, in the same order:

1. sift: Bob -> slots, bases; Alice -> match mask, intensity classes of the kept slots.
2. estimate: Bob -> his test-basis (X) bits; Alice -> errors per class.
3. verdict: Alice -> ``{"abort": reason | null, figures}``: QBER or decoy statistics over the
   thresholds end the block here (no key, an alarm).
4. reconcile (Cascade, Bob drives): Alice -> seed and block parities; Bob -> queries, Alice ->
   parities, ...; Bob -> an empty query list when done.
5. verify: Alice -> points and tag; Bob -> ok.
6. Bob -> key-basis errors per class (public: the positions stay with Bob).
7. finite-key length: both compute it from the same counts and the leak both ends metered.
8. amplify: Alice -> hash seed. Both hash to the same secret key.

Everything Alice discloses about the key is metered by the channel (``leaks_key=True``); the
finite-key length uses that meter, never a figure an algorithm reports about itself.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from controller.postprocess.amplify import draw_seed, hash_key
from controller.postprocess.cascade import CascadeAlice, CascadeBob, block_schedule
from controller.postprocess.estimate import BasisCounts, count_by_class
from controller.postprocess.finite_key import secret_key_length
from controller.postprocess.sift import (BASIS_X, BASIS_Z, AliceRecord, BobDetections, Sifted,
                                         alice_match)
from controller.postprocess.verify import P61, points_needed, tag

ALICE, BOB = "alice", "bob"


@dataclass(frozen=True)
class Protocol:
    """The security and abort settings both nodes must share (checked at session start).

    intensities/probabilities: mean photon numbers and choice probabilities, signal first.
    p_x: probability of the test basis X. max_qber: abort when the test-basis error rate is
    above it. min_single_photon_fraction: abort when the decoy bound on single-photon key-basis
    detections falls below this fraction of them (a photon-number attack or a broken source).
    eps_sec/eps_cor: security parameters. cascade_mode: "standard" or "low-round".
    """

    intensities: tuple[float, ...] = (0.5, 0.1, 0.0002)
    probabilities: tuple[float, ...] = (0.4, 0.4, 0.2)
    p_x: float = 0.5
    max_qber: float = 0.06
    min_single_photon_fraction: float = 0.05
    eps_sec: float = 1e-10
    eps_cor: float = 1e-15
    cascade_mode: str = "low-round"
    method: str = "two-decoy"
    alarm_min_detections: int = 10_000

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Protocol":
        d = dict(data)
        d["intensities"] = tuple(d["intensities"])
        d["probabilities"] = tuple(d["probabilities"])
        return cls(**d)


@dataclass
class BlockOutcome:
    """What one block gave on this side: the key (or None), the figures, the abort reason."""

    key: np.ndarray | None
    figures: dict = field(default_factory=dict)
    abort: str | None = None

    @property
    def secret_bits(self) -> int:
        return 0 if self.key is None else int(self.key.size)


def _send_json(ch, party, obj, tag_="ctl"):
    ch.send(party, json.dumps(obj).encode(), tag=tag_)


def _recv_json(ch, party) -> dict:
    data = ch.recv(party)
    return json.loads(bytes(data).decode())


def _verdict(proto: Protocol, counts: BasisCounts) -> tuple[str | None, dict]:
    """Return (abort reason or None, figures) from the test-basis statistics."""
    n_test = int(counts.n_test.sum())
    qber_x = counts.qber_test() if n_test else 0.5
    figures = {"n_key": int(counts.n_key.sum()), "n_test": n_test,
               "qber_x": round(float(qber_x), 6),
               "qber_x_by_class": [round(float(m) / n, 6) if n else None
                                   for m, n in zip(counts.m_test.tolist(), counts.n_test.tolist())]}
    if n_test == 0 or int(counts.n_key.sum()) == 0:
        return "empty", figures
    if qber_x > proto.max_qber:
        return "qber", figures
    return None, figures


def _length(proto, counts: BasisCounts, m_key, leak):
    counts = BasisCounts(counts.n_key, counts.n_test, counts.m_test, np.asarray(m_key, np.int64))
    return secret_key_length(counts.to_decoy_counts(proto.intensities, proto.probabilities),
                             leak, proto.eps_sec, proto.eps_cor, proto.method)


def _finish(proto, counts, m_key, leak, figures):
    """Return (length, abort reason) from the finite-key bound (both sides compute the same)."""
    fk = _length(proto, counts, m_key, leak)
    n_key = int(counts.n_key.sum())
    figures.update({"qber_z": round(float(fk.qber_key), 6), "leak_ec_bits": int(leak),
                    "s1": round(float(fk.s1), 1), "phi": round(float(fk.phi), 6),
                    "secret_bits": int(fk.length)})
    if n_key >= proto.alarm_min_detections and fk.s1 < proto.min_single_photon_fraction * n_key:
        return 0, "decoy"       # below alarm_min_detections the bound is too loose to accuse
    return int(fk.length), None


def alice_block(ch, record: AliceRecord, proto: Protocol, rng: np.random.Generator) -> BlockOutcome:
    """Run Alice's half of one block over ``ch``; ``rng`` must be CSPRNG-seeded."""
    n_classes = len(proto.intensities)
    # The leak is counted from the block's first message: a channel may count a received
    # message on its reader thread before the protocol reads it, so a snapshot taken later
    # than the peer's first leaking send could miss some of it on one side only.
    before = ch.stats.snapshot()
    # 1. sift
    slots = np.asarray(ch.recv(ALICE), dtype=np.int64)
    bob_bases = np.asarray(ch.recv(ALICE), dtype=np.uint8)
    mask = alice_match(record, slots, bob_bases)
    kept = slots[mask]
    classes = record.intensities[kept].astype(np.uint8)
    ch.send(ALICE, mask, tag="sift")
    ch.send(ALICE, classes, bits=2 * classes.size, tag="sift")
    mine = Sifted(kept, record.bases[kept].astype(np.uint8), classes,
                  record.bits[kept].astype(np.uint8))
    # 2. estimate
    bob_x = np.asarray(ch.recv(ALICE), dtype=np.uint8)
    x = mine.select(BASIS_X)
    wrong = mine.bits[x] != bob_x
    m_test = np.bincount(mine.intensities[x][wrong], minlength=n_classes)[:n_classes]
    ch.send(ALICE, m_test.astype(np.uint32), tag="estimate")
    n_key, n_test = count_by_class(mine, n_classes)
    counts = BasisCounts(n_key, n_test, m_test.astype(np.int64))
    # 3. verdict
    abort, figures = _verdict(proto, counts)
    figures["sifted_bits"] = int(kept.size)
    _send_json(ch, ALICE, {"abort": abort, "figures": figures})
    if abort:
        return BlockOutcome(None, figures, abort)
    z = mine.select(BASIS_Z)
    key = mine.bits[z]
    # 4. reconcile
    qber = min(max(figures["qber_x"], 0.005), 0.25)
    ks = block_schedule(key.size, qber, 20, proto.cascade_mode)
    seed = int(rng.integers(0, 2**63))
    casc = CascadeAlice(key, ks, seed)
    setup, tops = casc.opening()
    ch.send(ALICE, setup, tag="ec")
    ch.send(ALICE, tops, leaks_key=True, tag="ec")
    while True:
        queries = np.asarray(ch.recv(ALICE)).reshape(-1, 3)
        if queries.shape[0] == 0:
            break
        ch.send(ALICE, casc.answer(queries), leaks_key=True, tag="ec")
    # 5. verify
    t = points_needed(key.size, proto.eps_cor)
    points = rng.integers(0, P61, size=t, dtype=np.uint64)
    ch.send(ALICE, points, tag="verify")
    ch.send(ALICE, tag(key, points), bits=61 * t, leaks_key=True, tag="verify")
    ok = bool(np.asarray(ch.recv(ALICE))[0])
    if not ok:
        return BlockOutcome(None, figures, "verify")
    # 6.-7. key-basis errors, length
    m_key = np.asarray(ch.recv(ALICE), dtype=np.int64)
    leak = ch.stats.since(before).leaked_bits
    length, abort = _finish(proto, counts, m_key, leak, figures)
    if abort or length == 0:
        return BlockOutcome(None, figures, abort or "short")
    # 8. amplify
    seed_bits = draw_seed(rng, key.size, length)
    ch.send(ALICE, seed_bits.astype(bool), tag="amplify")
    return BlockOutcome(hash_key(seed_bits, key, length), figures)


def bob_block(ch, det: BobDetections, proto: Protocol) -> BlockOutcome:
    """Run Bob's half of one block over ``ch``."""
    n_classes = len(proto.intensities)
    before = ch.stats.snapshot()        # before anything can arrive: see alice_block
    ch.send(BOB, det.slots, tag="sift")
    ch.send(BOB, det.bases.astype(bool), tag="sift")
    mask = np.asarray(ch.recv(BOB), dtype=bool)
    classes = np.asarray(ch.recv(BOB), dtype=np.uint8)
    mine = Sifted(det.slots[mask], det.bases[mask].astype(np.uint8), classes,
                  det.bits[mask].astype(np.uint8))
    x = mine.select(BASIS_X)
    ch.send(BOB, mine.bits[x].astype(bool), tag="estimate")
    m_test = np.asarray(ch.recv(BOB), dtype=np.int64)
    n_key, n_test = count_by_class(mine, n_classes)
    counts = BasisCounts(n_key, n_test, m_test)
    verdict = _recv_json(ch, BOB)
    figures = verdict["figures"]
    if verdict["abort"]:
        return BlockOutcome(None, figures, verdict["abort"])
    z = mine.select(BASIS_Z)
    raw = mine.bits[z]
    casc = CascadeBob(raw, np.asarray(ch.recv(BOB)), np.asarray(ch.recv(BOB)), proto.cascade_mode)
    answers = None
    while True:
        queries = casc.next_queries(answers)
        if queries is None:
            ch.send(BOB, np.zeros((0, 3), dtype=np.int32), bits=0, tag="ec")
            break
        ch.send(BOB, queries.astype(np.int32), bits=32 * len(queries), tag="ec")
        answers = np.asarray(ch.recv(BOB), dtype=np.uint8)
    fixed = casc.y
    points = np.asarray(ch.recv(BOB), dtype=np.uint64)
    alice_tag = np.asarray(ch.recv(BOB), dtype=np.uint64)
    ok = bool(np.array_equal(tag(fixed, points), alice_tag))
    ch.send(BOB, np.array([ok]), tag="verify")
    if not ok:
        return BlockOutcome(None, figures, "verify")
    flipped = raw != fixed
    m_key = np.bincount(mine.intensities[z][flipped], minlength=n_classes)[:n_classes]
    ch.send(BOB, m_key.astype(np.uint32), tag="estimate")
    leak = ch.stats.since(before).leaked_bits
    length, abort = _finish(proto, counts, m_key, leak, figures)
    if abort or length == 0:
        return BlockOutcome(None, figures, abort or "short")
    seed_bits = np.asarray(ch.recv(BOB), dtype=np.uint8)
    return BlockOutcome(hash_key(seed_bits, fixed, length), figures)
