"""Sifting, estimation and the metering channel on synthetic detections."""

import numpy as np
import pytest

from controller.postprocess.channel import LocalChannel, payload_bits
from controller.postprocess.estimate import estimate, key_errors_by_class, qber_interval
from controller.postprocess.sift import (BASIS_X, BASIS_Z, AliceRecord, alice_match, sift,
                                         squash_clicks)

SEED = 20261127


def _link(seed, n_slots=200_000, p_det=0.1, qber=0.03, p_double=0.01, p_z=0.8):
    rng = np.random.default_rng(seed)
    record = AliceRecord(
        bits=rng.integers(0, 2, n_slots, dtype=np.uint8),
        bases=(rng.random(n_slots) > p_z).astype(np.uint8),
        intensities=rng.choice(3, n_slots, p=[0.7, 0.2, 0.1]).astype(np.uint8),
        usable=rng.random(n_slots) > 0.01)
    det = np.flatnonzero(rng.random(n_slots) < p_det)
    bob_bases = (rng.random(det.size) > p_z).astype(np.uint8)
    same = bob_bases == record.bases[det]
    bit = np.where(same, record.bits[det], rng.integers(0, 2, det.size)).astype(np.uint8)
    bit ^= (rng.random(det.size) < qber).astype(np.uint8)
    clicks = np.where(bit == 0, 1, 2).astype(np.uint8)
    clicks[rng.random(det.size) < p_double] = 3
    return rng, record, det, bob_bases, clicks


def test_sift_keeps_exactly_matching_usable_slots():
    rng, record, det, bob_bases, clicks = _link(SEED)
    bob = squash_clicks(det, bob_bases, clicks, rng)
    ch = LocalChannel()
    a, b = sift(record, bob, ch)
    expect = det[(record.bases[det] == bob_bases) & record.usable[det]]
    assert np.array_equal(a.slots, expect), f"seed {SEED}"
    assert np.array_equal(a.slots, b.slots)
    assert np.array_equal(a.intensities, record.intensities[expect])
    assert np.array_equal(b.intensities, a.intensities)
    assert np.all(record.usable[a.slots])
    # three messages: announcement (2 parts), mask, classes; nothing leaks key bits
    assert ch.stats.messages == 4 and ch.stats.leaked_bits == 0
    assert ch.stats.rounds == 1
    assert ch.pending("alice") == 0 and ch.pending("bob") == 0


def test_double_clicks_are_squashed_to_unbiased_random_bits():
    rng = np.random.default_rng(SEED)
    n = 20_000
    out = squash_clicks(np.arange(n), np.zeros(n, np.uint8), np.full(n, 3, np.uint8), rng)
    # a fair coin: 20000 flips within 4 sigma of 1/2
    assert abs(out.bits.mean() - 0.5) < 4 * 0.5 / np.sqrt(n), f"seed {SEED}"
    single = squash_clicks([5, 6, 7], [0, 1, 0], [1, 2, 0], rng)
    assert single.slots.tolist() == [5, 6] and single.bits.tolist() == [0, 1]


def test_squash_rejects_bad_click_codes():
    with pytest.raises(ValueError, match="click codes"):
        squash_clicks([1], [0], [4], np.random.default_rng(0))


def test_alice_match_rejects_unknown_slots():
    record = AliceRecord(np.zeros(4, np.uint8), np.zeros(4, np.uint8), np.zeros(4, np.uint8),
                         np.ones(4, bool))
    assert alice_match(record, np.array([0, 3]), np.array([0, 1])).tolist() == [True, False]
    with pytest.raises(ValueError, match="outside"):
        alice_match(record, np.array([4]), np.array([0]))


def test_estimate_counts_errors_per_class_and_basis():
    rng, record, det, bob_bases, clicks = _link(SEED + 1, qber=0.05, p_double=0.0)
    bob = squash_clicks(det, bob_bases, clicks, rng)
    ch = LocalChannel()
    a, b = sift(record, bob, ch)
    counts = estimate(a, b, ch)
    x = a.bases == BASIS_X
    wrong = a.bits != b.bits
    for k in range(3):
        assert counts.n_test[k] == np.sum(x & (a.intensities == k))
        assert counts.m_test[k] == np.sum(x & wrong & (a.intensities == k))
        assert counts.n_key[k] == np.sum(~x & (a.intensities == k))
    assert counts.qber_test() == pytest.approx(0.05, abs=0.01), f"seed {SEED + 1}"
    # the key basis is not disclosed: only X-basis bits went over the channel
    z = a.bases == BASIS_Z
    fixed = key_errors_by_class(counts, a.intensities[z], b.bits[z], a.bits[z])
    assert fixed.m_key.sum() == np.sum(wrong & z)
    dc = fixed.to_decoy_counts((0.5, 0.1, 0.0), (0.7, 0.2, 0.1))
    assert sum(dc.n_key) == z.sum()


def test_qber_interval_is_clopper_pearson():
    est, lo, hi = qber_interval(20, 1000, 0.95)
    assert est == 0.02
    # reference values of the exact binomial interval for 20/1000
    assert lo == pytest.approx(0.01226, abs=2e-5) and hi == pytest.approx(0.03072, abs=2e-5)
    assert qber_interval(0, 100)[1] == 0.0
    with pytest.raises(ValueError):
        qber_interval(5, 0)


def test_channel_meters_bits_leaks_and_flights():
    ch = LocalChannel()
    ch.send("bob", b"abc")
    ch.send("bob", np.zeros(10, dtype=np.int32))
    ch.send("alice", np.ones(13, dtype=bool), leaks_key=True, tag="ec")
    ch.send("alice", np.ones(5, dtype=np.uint8), bits=5, leaks_key=True, tag="ec")
    ch.send("bob", b"x")
    assert ch.stats.bits == 24 + 320 + 13 + 5 + 8
    assert ch.stats.leaked_bits == 18
    assert ch.stats.by_tag["ec"] == 18
    assert ch.stats.flights == 3 and ch.stats.rounds == 2
    assert ch.recv("alice") == b"abc"
    msg = ch.recv("bob")
    assert msg.dtype == bool and msg.size == 13
    with pytest.raises(ValueError, match="unknown party"):
        ch.send("eve", b"")
    with pytest.raises(TypeError):
        ch.send("bob", [1, 2, 3])
    assert payload_bits(np.zeros(3, dtype=np.uint16)) == 48


def test_channel_copies_arrays_so_sender_cannot_change_sent_data():
    ch = LocalChannel()
    arr = np.zeros(4, dtype=np.uint8)
    ch.send("alice", arr)
    arr[:] = 1
    assert ch.recv("bob").tolist() == [0, 0, 0, 0]
    with pytest.raises(RuntimeError, match="out of step"):
        ch.recv("bob")
