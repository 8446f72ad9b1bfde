"""One block's distillation, split into Alice's half and Bob's half, over a metering channel.

The post-processing functions of :mod:`controller.postprocess` play both parties in one call;
two nodes in two processes each run one half here, talking only through ``channel`` (an
:class:`~controller.channel.AuthChannel` end, or anything with the same ``send``/``recv``).
The steps and messages are those of the two-party functions, in the same order:

1. sift: Bob -> slots, bases; Alice -> match mask, intensity classes of the kept slots.
2. estimate: Bob -> his test-basis (X) bits; Alice -> errors per class.
3. verdict: Alice -> ``{"abort": reason | null, figures}``: QBER or decoy statistics over the
   thresholds end the block here (no key, an alarm).
4. reconcile, by ``Protocol.reconciliation``: Cascade (Bob drives): Alice -> seed and block
   parities; Bob -> queries, Alice -> parities, ...; Bob -> an empty query list when done.
   Or LDPC (one way, blind): Alice -> frame header, syndromes, pads, hash tags; Bob -> the
   frames he could not decode, Alice -> their next blind bits, ... until none fails or no
   retry is left (``controller.postprocess.ldpc.LdpcAlice`` / ``LdpcBob``).
5. verify: Alice -> points and tag; Bob -> ok.
6. Bob -> key-basis errors per class (public: the positions stay with Bob).
7. finite-key length: both compute it from the same counts and the leak both ends metered.
8. amplify: Alice -> hash seed. Both hash to the same secret key.

Everything Alice discloses about the key is metered by the channel (``leaks_key=True``); the
finite-key length uses that meter, never a figure an algorithm reports about itself.

Every received value is checked against what the receiver knows before it sizes any work
(:mod:`controller.postprocess.peer`; docs/postprocess.md, "Input from the peer"): until the
peer's end-of-block tag verifies, it may have been altered on the way, and a value that does
not fit raises :class:`~controller.postprocess.peer.PeerInputError`, which the node runner
counts as tampering.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from controller.postprocess.amplify import draw_seed, hash_key, peer_seed
from controller.postprocess.cascade import CascadeAlice, CascadeBob, block_schedule
from controller.postprocess.estimate import BasisCounts, count_by_class, x_errors_by_class
from controller.postprocess.finite_key import secret_key_length
from controller.postprocess.infotheory import h2
from controller.postprocess.ldpc import LdpcAlice, LdpcBob, design_qber, plannable
from controller.postprocess.peer import (INTS, PeerInputError, peer_array, peer_bits, peer_counts,
                                         peer_json)
from controller.postprocess.reconcile import METHODS as RECONCILIATIONS
from controller.postprocess.sift import (BASIS_X, BASIS_Z, AliceRecord, BobDetections, Sifted,
                                         alice_match, bob_kept)
from controller.postprocess.verify import P61, bob_matches, peer_verdict, points_needed, tag

ALICE, BOB = "alice", "bob"
EC_PASSES = 20          # Cascade passes asked of block_schedule (low-round mode adds one)
VERDICTS = (None, "empty", "qber")      # Alice's verdicts that Bob may receive (see _verdict)


@dataclass(frozen=True)
class Protocol:
    """The security and abort settings both nodes must share (checked at session start).

    intensities/probabilities: mean photon numbers and choice probabilities, signal first.
    p_x: probability of the test basis X. max_qber: abort when the test-basis error rate is
    above it. min_single_photon_fraction: abort when the decoy bound on single-photon key-basis
    detections falls below this fraction of them (a photon-number attack or a broken source).
    eps_sec/eps_cor: security parameters. reconciliation: "cascade" (interactive, ~40-50
    rounds in low-round mode) or "ldpc" (one way and blind: a few rounds, for links whose
    round trip is long). cascade_mode: "standard" or "low-round".
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
    reconciliation: str = "cascade"
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
    return peer_json(ch.recv(party), f"a message to {party}")


def _recv_verdict(ch) -> tuple[str | None, dict]:
    """Return Alice's received verdict (abort reason or None, figures), checked."""
    msg = _recv_json(ch, BOB)
    if "abort" not in msg or "figures" not in msg:
        raise PeerInputError(f"Alice's verdict: fields abort and figures expected, got {sorted(msg)}")
    abort, figures = msg["abort"], msg["figures"]
    if abort not in VERDICTS or not isinstance(figures, dict):
        raise PeerInputError(f"Alice's verdict: expected an abort reason in {VERDICTS} and a "
                             f"dict of figures, got {abort!r} and {type(figures).__name__}")
    return abort, figures


def _ec_schedule(n: int, figures: dict, mode: str) -> list[int]:
    """Return the Cascade block sizes of an n-bit key, from the verdict's test-basis QBER."""
    qber = min(max(figures["qber_x"], 0.005), 0.25)
    return block_schedule(n, qber, EC_PASSES, mode)


def _verdict_qber(figures: dict) -> float:
    """Return the verdict's test-basis QBER, checked (Bob sizes work from it)."""
    qber = figures.get("qber_x")
    if isinstance(qber, bool) or not isinstance(qber, (int, float)) or not 0 <= qber <= 1:
        raise PeerInputError(f"Alice's verdict: qber_x must be a number in [0, 1], got {qber!r}")
    return float(qber)


def _ldpc_qber(figures: dict) -> float:
    """Return LDPC's design QBER from the verdict (both parties compute the same)."""
    return design_qber(_verdict_qber(figures))


def _ldpc_fits(n_key: int, figures: dict) -> bool:
    """Return True when LDPC has codes for a key of ``n_key`` bits (both parties compute the
    same; a key without one, under 64 bits or 80 at 1 %, ends the block as "short")."""
    return plannable(n_key, _ldpc_qber(figures))


def _bob_setup(setup, n: int, figures: dict, mode: str) -> np.ndarray:
    """Check Alice's Cascade setup (seed, block sizes): the sizes must be the schedule both
    compute from the verdict's QBER (Bob sizes his caches from them)."""
    qber = _verdict_qber(figures)
    ks = _ec_schedule(n, figures, mode)
    setup = peer_array(setup, "Alice's Cascade setup", kinds="u", size=len(ks) + 1)
    if setup[1:].tolist() != ks:
        raise PeerInputError(f"Alice's Cascade setup: block sizes {setup[1:].tolist()} are not "
                             f"the schedule {ks} of {n} bits at QBER {qber}")
    return setup


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
    q = float(fk.qber_key)
    # reconciliation efficiency f = leak / (n h(Q)) at the key basis's QBER (none when Q = 0)
    figures["ec_efficiency"] = round(leak / (n_key * float(h2(q))), 4) if n_key and 0.0 < q < 0.5 else None
    figures.update({"qber_z": round(q, 6), "leak_ec_bits": int(leak),
                    "s1": round(float(fk.s1), 1), "phi": round(float(fk.phi), 6),
                    "secret_bits": int(fk.length)})
    if n_key >= proto.alarm_min_detections and fk.s1 < proto.min_single_photon_fraction * n_key:
        return 0, "decoy"       # below alarm_min_detections the bound is too loose to accuse
    return int(fk.length), None


def _alice_cascade(ch, key, figures, proto, rng) -> None:
    """Alice's side of Cascade: the opening, then the parities of Bob's queries until he is done."""
    ks = _ec_schedule(key.size, figures, proto.cascade_mode)
    seed = int(rng.integers(0, 2**63))
    casc = CascadeAlice(key, ks, seed, proto.cascade_mode)
    setup, tops = casc.opening()
    ch.send(ALICE, setup, tag="ec")
    ch.send(ALICE, tops, leaks_key=True, tag="ec")
    while True:
        queries = peer_array(ch.recv(ALICE), "Bob's Cascade queries", kinds=INTS, ndim=2, cols=3)
        if queries.shape[0] == 0:
            break
        ch.send(ALICE, casc.answer(queries), leaks_key=True, tag="ec")


def _bob_cascade(ch, raw, figures, proto) -> np.ndarray:
    """Bob's side of Cascade; return his corrected key."""
    setup = _bob_setup(ch.recv(BOB), raw.size, figures, proto.cascade_mode)
    tops = peer_bits(ch.recv(BOB), "Alice's Cascade block parities")
    casc = CascadeBob(raw, setup, tops, proto.cascade_mode)
    answers = None
    while True:
        queries = casc.next_queries(answers)
        if queries is None:
            ch.send(BOB, np.zeros((0, 3), dtype=np.int32), bits=0, tag="ec")
            break
        ch.send(BOB, queries.astype(np.int32), bits=32 * len(queries), tag="ec")
        answers = peer_bits(ch.recv(BOB), "Alice's Cascade parities", size=len(queries))
    return casc.y


def _bob_ldpc(ch, raw, figures) -> np.ndarray:
    """Bob's side of LDPC; return his corrected key (frames he could not decode keep his bits,
    and verification then fails)."""
    with LdpcBob(raw, _ldpc_qber(figures), ch) as ec:
        while ec.attempt(ch):
            ec.learn(ch)
        figures["ldpc_iterations"] = ec.stats.iterations
        figures["ldpc_decode_cpu_s"] = round(ec.stats.cpu_seconds, 4)
        return ec.key


def alice_block(ch, record: AliceRecord, proto: Protocol, rng: np.random.Generator) -> BlockOutcome:
    """Run Alice's half of one block over ``ch``; ``rng`` must be CSPRNG-seeded."""
    n_classes = len(proto.intensities)
    # The leak is counted from the block's first message: a channel may count a received
    # message on its reader thread before the protocol reads it, so a snapshot taken later
    # than the peer's first leaking send could miss some of it on one side only.
    before = ch.stats.snapshot()
    # 1. sift
    slots = ch.recv(ALICE)
    mask = alice_match(record, slots, ch.recv(ALICE))       # checks slots and bases
    kept = np.asarray(slots, dtype=np.int64)[mask]
    classes = record.intensities[kept].astype(np.uint8)
    ch.send(ALICE, mask, tag="sift")
    ch.send(ALICE, classes, bits=2 * classes.size, tag="sift")
    mine = Sifted(kept, record.bases[kept].astype(np.uint8), classes,
                  record.bits[kept].astype(np.uint8))
    # 2. estimate
    m_test = x_errors_by_class(mine, ch.recv(ALICE), n_classes)
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
    if proto.reconciliation == "ldpc":
        if not _ldpc_fits(key.size, figures):
            return BlockOutcome(None, figures, "short")
        with LdpcAlice(key, _ldpc_qber(figures), rng=rng, seed=int(rng.integers(0, 2**62))) as ec:
            ec.open(ch)
            while ec.reveal(ch):
                pass
    else:
        _alice_cascade(ch, key, figures, proto, rng)
    # 5. verify
    t = points_needed(key.size, proto.eps_cor)
    points = rng.integers(0, P61, size=t, dtype=np.uint64)
    ch.send(ALICE, points, tag="verify")
    ch.send(ALICE, tag(key, points), bits=61 * t, leaks_key=True, tag="verify")
    ok = peer_verdict(ch.recv(ALICE))
    if not ok:
        return BlockOutcome(None, figures, "verify")
    # 6.-7. key-basis errors, length
    m_key = peer_counts(ch.recv(ALICE), "Bob's key-basis errors per class", n_key)
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
    mine = bob_kept(det, ch.recv(BOB), ch.recv(BOB), n_classes)
    x = mine.select(BASIS_X)
    ch.send(BOB, mine.bits[x].astype(bool), tag="estimate")
    n_key, n_test = count_by_class(mine, n_classes)
    m_test = peer_counts(ch.recv(BOB), "Alice's test-basis errors per class", n_test)
    counts = BasisCounts(n_key, n_test, m_test)
    abort, figures = _recv_verdict(ch)
    if abort:
        return BlockOutcome(None, figures, abort)
    z = mine.select(BASIS_Z)
    raw = mine.bits[z]
    if proto.reconciliation == "ldpc":
        if not _ldpc_fits(raw.size, figures):
            return BlockOutcome(None, figures, "short")
        fixed = _bob_ldpc(ch, raw, figures)
    else:
        fixed = _bob_cascade(ch, raw, figures, proto)
    ok = bob_matches(fixed, ch.recv(BOB), ch.recv(BOB), proto.eps_cor)
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
    seed_bits = peer_seed(ch.recv(BOB), fixed.size, length)
    return BlockOutcome(hash_key(seed_bits, fixed, length), figures)
