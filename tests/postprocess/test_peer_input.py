"""Numbers and arrays from the peer: a malicious value gets a clear error, never a crash or a hang.

Each hardened receiving point (docs/postprocess.md, "Input from the peer") is fed an oversized,
negative, wrongly typed or misshapen value and must raise ``PeerInputError`` / ``ValueError``
naming it.  Then a seeded fuzz flips bytes in the messages of whole blocks (the node's two
halves, ``alice_block``/``bob_block``, over a channel that serialises each payload as the TCP
channel does): every run ends with equal keys, a block the end-of-block tag refuses, or a
suspected-tamper error, never another exception or a hang.
"""

import queue
import re
import threading

import numpy as np
import pytest

from controller.channel import BlockAborted, ChannelError, TamperedMessage, decode_payload, encode_payload
from controller.node.protocol import Protocol, alice_block, bob_block
from controller.postprocess.amplify import amplify, peer_seed
from controller.postprocess.cascade import MAX_PASSES, CascadeAlice, CascadeBob, block_schedule
from controller.postprocess.channel import ChannelStats, LocalChannel
from controller.postprocess.estimate import x_errors_by_class
from controller.postprocess.peer import PeerInputError, peer_counts, peer_json
from controller.postprocess.sift import (AliceRecord, BobDetections, Sifted, alice_match, bob_kept,
                                         squash_clicks)
from controller.postprocess.verify import P61, bob_matches, peer_verdict, points_needed

SEED = 5


def _record(n=1000, seed=SEED):
    rng = np.random.default_rng(seed)
    return AliceRecord(rng.integers(0, 2, n, dtype=np.uint8), rng.integers(0, 2, n, dtype=np.uint8),
                       rng.integers(0, 3, n, dtype=np.uint8), np.ones(n, dtype=bool))


def _detections(n=200):
    slots = np.arange(0, 5 * n, 5, dtype=np.int64)
    return BobDetections(slots, np.zeros(n, np.uint8), np.ones(n, np.uint8))


# -- sifting ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("slots, bases, what", [
    (np.array([3, 1000]), np.zeros(2, bool), "outside Alice's record"),      # index past the end
    (np.array([-1, 3]), np.zeros(2, bool), "outside Alice's record"),        # negative
    (np.array([1.0, 2.0]), np.zeros(2, bool), "dtype float64"),             # wrong dtype
    (np.array([[1, 2]]), np.zeros(2, bool), "shape (1, 2)"),                 # wrong shape
    (np.array([1, 2, 3]), np.zeros(1, bool), "expected 3 values, got 1"),   # would broadcast
    (np.array([1, 2]), np.array([0, 2]), "<= 1"),                            # not a basis
    (b"\x01\x02", np.zeros(2, bool), "expected an array"),                   # bytes, not an array
])
def test_alice_refuses_bad_slots_and_bases(slots, bases, what):
    with pytest.raises(PeerInputError, match=re.escape(what)):
        alice_match(_record(), slots, bases)


@pytest.mark.parametrize("mask, classes, what", [
    (np.ones(199, bool), np.zeros(199, np.uint8), "expected 200 values, got 199"),
    (np.ones(200, bool), np.zeros(201, np.uint8), "expected 200 values, got 201"),
    (np.ones(200, bool), np.full(200, 3, np.uint8), "<= 2"),
    (np.ones(200, np.float32), np.zeros(200, np.uint8), "dtype float32"),
    (np.ones((200, 1), bool), np.zeros(200, np.uint8), "shape"),
])
def test_bob_refuses_a_bad_mask_or_classes(mask, classes, what):
    with pytest.raises(PeerInputError, match=re.escape(what)):
        bob_kept(_detections(), mask, classes, 3)


# -- estimation, verification, amplification ------------------------------------------------------

def _sifted(n=100):
    rng = np.random.default_rng(SEED)
    return Sifted(np.arange(n), rng.integers(0, 2, n, dtype=np.uint8),
                  rng.integers(0, 3, n, dtype=np.uint8), rng.integers(0, 2, n, dtype=np.uint8))


def test_test_basis_bits_must_match_the_x_slots():
    s = _sifted()
    nx = int(s.select(1).sum())
    assert x_errors_by_class(s, np.zeros(nx, bool), 3).sum() == s.bits[s.select(1)].sum()
    for bad in (np.zeros(nx + 1, bool), np.zeros(1, bool), np.zeros(nx, np.int64) + 7):
        with pytest.raises(PeerInputError, match="Bob's test-basis bits"):
            x_errors_by_class(s, bad, 3)


@pytest.mark.parametrize("counts, what", [
    (np.array([1, 2], np.uint32), "expected 3 values"),
    (np.array([1, 2, 3, 4], np.uint32), "expected 3 values"),
    (np.array([-1, 0, 0], np.int64), ">= 0"),
    (np.array([0, 11, 0], np.uint32), "class 1 has 11, more than the 10"),
    (np.array([0.5, 0, 0]), "dtype float64"),
])
def test_error_counts_are_bounded_by_the_detections(counts, what):
    with pytest.raises(PeerInputError, match=re.escape(what)):
        peer_counts(counts, "errors", np.array([10, 10, 10]))


def test_verification_points_and_tag_have_the_length_both_compute():
    bits = np.zeros(1000, np.uint8)
    t = points_needed(1000, 1e-15)
    good = np.arange(1, t + 1, dtype=np.uint64)
    assert not bob_matches(bits, good, np.zeros(t, np.uint64), 1e-15)
    huge = np.ones(5_000_000, dtype=np.uint64)          # would have meant 5e6 hash evaluations
    for points, tag_, what in ((huge, np.zeros(t, np.uint64), f"expected {t} values"),
                               (good, np.zeros(t + 1, np.uint64), f"expected {t} values"),
                               (np.full(t, P61, np.uint64), np.zeros(t, np.uint64), "<= "),
                               (good.astype(np.int64), np.zeros(t, np.uint64), "dtype int64")):
        with pytest.raises(PeerInputError, match=what):
            bob_matches(bits, points, tag_, 1e-15)
    for answer in (np.zeros(0, bool), np.array([True, False]), np.array([2])):
        with pytest.raises(PeerInputError, match="verification answer"):
            peer_verdict(answer)


def test_amplification_seed_has_the_length_of_n_to_m():
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2, 500, dtype=np.uint8)
    ch = LocalChannel()
    ka, kb = amplify(a, a.copy(), 100, ch, rng)
    assert np.array_equal(ka, kb)
    for bad in (np.ones(10, bool), np.ones(2 * 500 - 100 - 1, bool), np.full(2 * 500 - 100 - 2, 5)):
        with pytest.raises(PeerInputError, match="amplification seed"):
            peer_seed(bad, 500, 100)


def test_json_messages_that_do_not_parse_or_lack_fields():
    for data, what in ((b"\xff{", "not a JSON message"), (b"[1, 2]", "JSON object"),
                       (b'{"abort": null}', "missing"), (np.zeros(3), "expected a JSON message")):
        with pytest.raises(PeerInputError, match=what):
            peer_json(data, "verdict", ("abort", "figures"))


# -- Cascade's receiving points --------------------------------------------------------------------

def _cascade_pair(n=4000, mode="standard"):
    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < 0.03).astype(np.uint8)
    alice = CascadeAlice(a, block_schedule(n, 0.03, mode=mode), 11)
    return alice, b, *alice.opening()


@pytest.mark.parametrize("forge, what", [
    (lambda s: s[:1], "a seed and a block size"),
    (lambda s: np.concatenate([s, np.full(MAX_PASSES, 8, np.uint64)]), f"at most {MAX_PASSES} passes"),
    (lambda s: s.astype(np.float64), "got dtype"),
    (lambda s: s.reshape(1, -1), "1-D"),
    (lambda s: np.concatenate([s[:1], [2**40], s[2:]]).astype(np.uint64), "block sizes must be"),
])
def test_bob_refuses_a_forged_cascade_setup(forge, what):
    _, b, setup, tops = _cascade_pair()
    with pytest.raises(ValueError, match=what):
        CascadeBob(b, forge(setup), tops)


def test_bob_refuses_bad_block_parities_and_answers():
    alice, b, setup, tops = _cascade_pair()
    for bad in (tops[:-1], tops.astype(np.uint8) * 3, tops.astype(np.float32)):
        with pytest.raises(ValueError, match="block parities"):
            CascadeBob(b, setup, bad)
    bob = CascadeBob(b, setup, tops)
    q = bob.next_queries()
    ans = alice.answer(q)
    with pytest.raises(ValueError, match="1-D"):
        bob.next_queries(ans.reshape(1, -1))


def test_alice_refuses_queries_that_would_keep_her_busy_for_hours():
    alice, _, _, _ = _cascade_pair(n=100_000)
    plane = np.tile(np.array([[1 << 16, 0, 100_000]], dtype=np.int32), (200_000, 1))  # bit-0 planes of the whole key
    with pytest.raises(ValueError, match="would read"):
        alice.answer(plane)
    with pytest.raises(ValueError, match="not a range"):
        alice.answer(np.array([[0, 5, 100_001]], dtype=np.int32))      # past the end


# -- seeded fuzz of whole blocks ---------------------------------------------------------------------

PROTO = Protocol(intensities=(0.5, 0.1, 0.0002), probabilities=(0.6, 0.3, 0.1), eps_sec=1e-6,
                 eps_cor=1e-12, alarm_min_detections=10**9)
WAIT_S = 30.0        # a receiver waiting longer than this means a hang


def _block_data(seed, n_slots=400_000, eta=0.5, y0=1e-4, e_d=0.015):
    rng = np.random.default_rng(seed)
    record = AliceRecord(rng.integers(0, 2, n_slots, dtype=np.uint8),
                         (rng.random(n_slots) < 0.5).astype(np.uint8),
                         rng.choice(3, n_slots, p=PROTO.probabilities).astype(np.uint8),
                         rng.random(n_slots) < 0.99)
    mu = np.asarray(PROTO.intensities)[record.intensities]
    signal = rng.random(n_slots) < 1.0 - np.exp(-eta * mu)
    bob_bases = (rng.random(n_slots) < 0.5).astype(np.uint8)
    ideal = np.where(bob_bases == record.bases, record.bits, rng.integers(0, 2, n_slots)).astype(np.uint8)
    ideal ^= (rng.random(n_slots) < e_d).astype(np.uint8)
    click0 = (signal & (ideal == 0)) | (rng.random(n_slots) < y0 / 2)
    click1 = (signal & (ideal == 1)) | (rng.random(n_slots) < y0 / 2)
    clicks = click0.astype(np.uint8) | (click1.astype(np.uint8) << 1)
    det = np.flatnonzero(clicks)
    return record, squash_clicks(det, bob_bases[det], clicks[det], rng)


class _End:
    """One party's end of an in-process link that carries each payload as the TCP channel's
    encoding (:func:`encode_payload`), flips bytes of the ``victim``-th message on the way, and
    behaves like :class:`AuthChannel` on what it receives: a payload that does not decode is
    suspected tampering (raised here, the block aborted at both ends); a suspect at either end
    makes the other end's ``recv`` raise :class:`BlockAborted`."""

    def __init__(self, link, party):
        self.link, self.party = link, party
        self.stats = ChannelStats()
        self.inbox: queue.Queue = queue.Queue()

    def send(self, sender, payload, *, bits=None, leaks_key=False, tag="", checkpoint=False):
        assert sender == self.party
        self.link.carry(self, payload, bits, leaks_key, tag)

    def recv(self, receiver, timeout=None):
        try:
            item = self.inbox.get(timeout=WAIT_S)
        except queue.Empty:
            raise AssertionError(f"{self.party} waited {WAIT_S} s for a message: a hang") from None
        if isinstance(item, Exception):
            raise item
        try:
            return decode_payload(item)
        except Exception as exc:  # noqa: BLE001 - as AuthChannel.recv: any decoding failure
            raise self.link.suspect(self, f"does not decode ({type(exc).__name__}: {exc})") from None


class _Link:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.victim = int(self.rng.integers(0, 70))        # a block has about 65 messages
        self.count, self.flipped, self.lock = 0, False, threading.Lock()
        self.ends = {p: _End(self, p) for p in ("alice", "bob")}

    def carry(self, src, payload, bits, leaks, tag):
        data = bytearray(encode_payload(payload))
        n = payload.size if isinstance(payload, np.ndarray) and payload.dtype == bool else None
        bits = (n if n is not None else 8 * len(data) - 8) if bits is None else bits
        with self.lock:
            for end in self.ends.values():           # both ends meter it, as the TCP channel
                end.stats.record(int(bits), leaks=leaks, tag=tag, new_flight=True)
            if self.count == self.victim:
                for _ in range(int(self.rng.integers(1, 4))):
                    data[int(self.rng.integers(0, len(data)))] ^= int(self.rng.integers(1, 256))
                self.flipped = True
            self.count += 1
        other = self.ends["bob" if src.party == "alice" else "alice"]
        other.inbox.put(bytes(data))

    def suspect(self, end, reason):
        for other in self.ends.values():
            if other is not end:
                other.inbox.put(BlockAborted(f"the peer aborted the block: {reason}"))
        return TamperedMessage(f"{end.party}: a payload {reason}")

    def fail(self, end, exc):
        """A receiving point refused a value: the runner treats it as tampering (suspect)."""
        self.suspect(end, f"refused ({exc})")


def _run_block(seed, record, det, victim=None):
    link = _Link(seed)
    if victim is not None:
        link.victim = victim
    out: dict = {}

    def run(party, fn, *args):
        try:
            out[party] = fn(link.ends[party], *args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test with the seed
            out[party] = exc
            link.fail(link.ends[party], exc)

    threads = [threading.Thread(target=run, args=("alice", alice_block, record, PROTO,
                                                  np.random.default_rng([seed, 1]))),
               threading.Thread(target=run, args=("bob", bob_block, det, PROTO))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * WAIT_S)
    assert not any(t.is_alive() for t in threads), f"seed {seed}: a half did not finish (hang)"
    return link, out["alice"], out["bob"]


@pytest.fixture(scope="module")
def block():
    return _block_data(SEED)


def test_an_untouched_block_runs_to_the_same_end_on_both_sides(block):
    """The fuzz's block, nothing flipped: both halves reach the finite-key length and agree
    (the block is too short for a key at these settings: 'short' on both sides)."""
    link, a, b = _run_block(SEED, *block, victim=-1)
    assert not link.flipped and link.count > 60, link.count
    assert a.abort == b.abort == "short", (a, b)
    assert a.figures["leak_ec_bits"] == b.figures["leak_ec_bits"] > 0
    assert a.figures["secret_bits"] == b.figures["secret_bits"]


@pytest.mark.parametrize("seed", range(300))
def test_flipped_bytes_end_in_a_key_a_refused_block_or_suspected_tampering(seed, block):
    link, a, b = _run_block(seed, *block)
    for party, res in (("alice", a), ("bob", b)):
        if isinstance(res, BaseException):
            assert isinstance(res, (ValueError, ChannelError)), \
                f"seed {seed}: {party} raised {type(res).__name__}: {res}"
    if not link.flipped:
        # nothing altered: both ends agree (equal keys, or the same refusal)
        assert not isinstance(a, BaseException) and not isinstance(b, BaseException), (seed, a, b)
        assert a.abort == b.abort, (seed, a.abort, b.abort)
        assert (a.key is None) == (b.key is None) and (a.key is None or np.array_equal(a.key, b.key)), seed
    # an altered message that both halves accepted is refused by the end-of-block tag


# -- seeded fuzz of reconciliation alone (both parties in one call) ---------------------------------

class _FlipChannel(LocalChannel):
    """A LocalChannel that carries each payload in the TCP channel's encoding and flips bytes of
    its ``victim``-th message; a payload that no longer decodes raises TamperedMessage."""

    def __init__(self, seed, messages):
        super().__init__()
        self.rng = np.random.default_rng(seed)
        self.victim, self.count, self.flipped = int(self.rng.integers(0, messages)), 0, False

    def send(self, sender, payload, *, bits=None, leaks_key=False, tag=""):
        data = bytearray(encode_payload(payload))
        if self.count == self.victim:
            for _ in range(int(self.rng.integers(1, 4))):
                data[int(self.rng.integers(0, len(data)))] ^= int(self.rng.integers(1, 256))
            self.flipped = True
        self.count += 1
        super().send(sender, bytes(data), bits=bits, leaks_key=leaks_key, tag=tag)

    def recv(self, receiver):
        try:
            return decode_payload(super().recv(receiver))
        except ChannelError:
            raise
        except Exception as exc:  # noqa: BLE001 - as AuthChannel.recv
            raise TamperedMessage(f"does not decode ({type(exc).__name__}: {exc})") from None


def _reconcile_in_thread(seed, method, options, messages, n=6000, qber=0.03):
    from controller.postprocess.reconcile import reconcile
    rng = np.random.default_rng([SEED, seed])
    a = rng.integers(0, 2, n, dtype=np.uint8)
    b = a ^ (rng.random(n) < qber).astype(np.uint8)
    ch = _FlipChannel(seed, messages)
    out = {}

    def run():
        try:
            out["key"] = reconcile(a, b, qber, method, ch, seed=seed, **options)[0]
        except BaseException as exc:  # noqa: BLE001 - checked below
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(WAIT_S)
    assert not t.is_alive(), f"seed {seed}: {method} did not finish with message {ch.victim} altered (hang)"
    err = out.get("error")
    assert err is None or isinstance(err, (ValueError, ChannelError)), \
        f"seed {seed}: {method} raised {type(err).__name__}: {err}"
    if not ch.flipped:
        assert err is None and np.array_equal(out["key"], a), seed


@pytest.mark.parametrize("seed", range(100))
def test_ldpc_with_flipped_bytes_ends_in_a_key_or_a_clear_error(seed):
    _reconcile_in_thread(seed, "ldpc", {"frame_bits": 2000, "rng": np.random.default_rng(seed)}, 12)


@pytest.mark.parametrize("seed", range(100))
def test_cascade_with_flipped_bytes_ends_in_a_key_or_a_clear_error(seed):
    _reconcile_in_thread(seed, "cascade", {"mode": "low-round" if seed % 2 else "standard"}, 60)


@pytest.mark.parametrize("index, forge, what", [
    (0, lambda x: np.concatenate([x[:-7], [1 << 40], x[-6:]]), "frame plans"),     # last frame's k
    (0, lambda x: x[:-1], "frame header: expected"),
    (1, lambda x: x[:-1], "LDPC syndromes: expected"),
    (2, lambda x: np.concatenate([x, x]), "padded syndromes: expected"),
    (3, lambda x: np.array([P61], np.uint64), "hash point: values must be <="),
    (4, lambda x: x[:1], "frame tags: expected"),
    (5, lambda x: x[:-1], "LDPC first reveals: expected"),                        # ldpc.pre_steps(0.03) = 1
    (6, lambda x: x[:-1], "failed LDPC frames: expected"),                        # Bob -> Alice
    (6, lambda x: x.astype(np.float64), "failed LDPC frames: expected an array of bools"),
])
def test_ldpc_receiving_points_refuse_forged_messages(index, forge, what):
    from controller.postprocess.reconcile import reconcile

    class Forge(LocalChannel):
        def send(self, sender, payload, **kw):
            if self.stats.messages == index:
                payload = forge(payload)
            super().send(sender, payload, **kw)

    rng = np.random.default_rng(SEED)
    a = rng.integers(0, 2, 6000, dtype=np.uint8)
    with pytest.raises(PeerInputError, match=re.escape(what)):
        reconcile(a, a ^ (rng.random(6000) < 0.03).astype(np.uint8), 0.03, "ldpc", Forge(),
                  frame_bits=2000, rng=np.random.default_rng(SEED))


@pytest.mark.parametrize("dtype", [b"<U2", b"|S4", b"|V8", b"(2,)u1", b"<M8[s]", b"|O"])
def test_channel_payloads_are_only_bool_integer_or_float_arrays(dtype):
    data = b"\x01" + bytes([len(dtype)]) + dtype + b"\x01" + (1).to_bytes(8, "big") + bytes(16)
    with pytest.raises(ChannelError, match="bool, integer or float"):
        decode_payload(data)
    with pytest.raises(TypeError, match="bool, integer and float"):
        encode_payload(np.zeros(2, dtype="<U2"))


@pytest.mark.parametrize("seed", range(60))
def test_distill_with_flipped_bytes_ends_in_equal_keys_or_a_clear_error(seed, block):
    from controller.postprocess.pipeline import distill
    ch = _FlipChannel(seed, 70)
    try:
        res = distill(*block, ch, intensities=PROTO.intensities, probabilities=PROTO.probabilities,
                      rng=np.random.default_rng(seed), eps_sec=PROTO.eps_sec, eps_cor=PROTO.eps_cor)
    except (ValueError, ChannelError):
        assert ch.flipped, seed
        return
    if not ch.flipped:
        assert res.ok or res.reason, seed
    if res.ok and not ch.flipped:
        assert np.array_equal(res.alice_key, res.bob_key), seed
