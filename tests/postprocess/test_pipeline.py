"""End to end: simulated decoy-state link -> sift -> estimate -> reconcile -> verify ->
finite-key length -> amplify, all traffic through one metering channel."""

import numpy as np

from controller.postprocess.amplify import amplify
from controller.postprocess.channel import LocalChannel
from controller.postprocess.estimate import estimate, key_errors_by_class
from controller.postprocess.finite_key import secret_key_length
from controller.postprocess.reconcile import reconcile
from controller.postprocess.sift import BASIS_Z, AliceRecord, sift, squash_clicks
from controller.postprocess.verify import verify

SEED = 77
MUS = (0.5, 0.1, 0.0)
PROBS = (0.6, 0.3, 0.1)
P_Z = 0.5


def _simulate(rng, n_slots, eta=0.2, y0=1e-4, e_d=0.015):
    """Weak coherent pulses through a lossy channel (eta = overall transmittance)."""
    record = AliceRecord(
        bits=rng.integers(0, 2, n_slots, dtype=np.uint8),
        bases=(rng.random(n_slots) > P_Z).astype(np.uint8),
        intensities=rng.choice(3, n_slots, p=PROBS).astype(np.uint8),
        usable=np.ones(n_slots, dtype=bool))
    mu = np.asarray(MUS)[record.intensities]
    signal = rng.random(n_slots) < 1.0 - np.exp(-eta * mu)
    dark0 = rng.random(n_slots) < y0 / 2
    dark1 = rng.random(n_slots) < y0 / 2
    bob_bases = (rng.random(n_slots) > P_Z).astype(np.uint8)
    same = bob_bases == record.bases
    ideal = np.where(same, record.bits, rng.integers(0, 2, n_slots)).astype(np.uint8)
    ideal ^= (rng.random(n_slots) < e_d).astype(np.uint8)
    click0 = (signal & (ideal == 0)) | dark0
    click1 = (signal & (ideal == 1)) | dark1
    clicks = click0.astype(np.uint8) | (click1.astype(np.uint8) << 1)
    det = np.flatnonzero(clicks)
    return record, squash_clicks(det, bob_bases[det], clicks[det], rng)


def test_whole_chain_gives_equal_secret_keys_of_the_finite_key_length():
    rng = np.random.default_rng(SEED)
    record, detections = _simulate(rng, 12_000_000)
    ch = LocalChannel()
    alice, bob = sift(record, detections, ch)
    counts = estimate(alice, bob, ch)
    z = alice.bases == BASIS_Z
    qber_x = counts.qber_test()
    before = ch.stats.snapshot()
    fixed, rep = reconcile(alice.bits[z], bob.bits[z], max(qber_x, 0.005), channel=ch, seed=SEED)
    assert np.array_equal(fixed, alice.bits[z]), f"seed {SEED}"
    ok = verify(alice.bits[z], fixed, ch, rng, eps_cor=1e-15)
    assert ok.ok
    leak = ch.stats.since(before).leaked_bits       # reconciliation + verification tag
    counts = key_errors_by_class(counts, bob.intensities[z], bob.bits[z], fixed)
    result = secret_key_length(counts.to_decoy_counts(MUS, PROBS), leak, 1e-10, 1e-15)
    n_key = int(z.sum())
    assert 0 < result.length < n_key, (result, n_key)
    # the bound is below the single-photon count the simulation actually produced
    assert result.length < result.s1
    ka, kb = amplify(alice.bits[z], fixed, result.length, ch, rng)
    assert np.array_equal(ka, kb) and ka.size == result.length
    # every message was received: nothing left in either queue
    assert ch.pending("alice") == 0 and ch.pending("bob") == 0


def test_distill_composes_the_chain_and_refuses_a_noisy_block():
    from controller.postprocess.pipeline import distill
    rng = np.random.default_rng(SEED + 1)
    record, detections = _simulate(rng, 12_000_000)
    res = distill(record, detections, LocalChannel(), intensities=MUS, probabilities=PROBS,
                  rng=rng, reconcile_seed=SEED)
    assert res.ok, res.reason
    assert np.array_equal(res.alice_key, res.bob_key)
    assert res.alice_key.size == res.finite_key.length == res.summary["secret_bits"] > 0
    # 12 % misalignment: reconciliation still works but the bound leaves nothing
    rng = np.random.default_rng(SEED + 2)
    record, detections = _simulate(rng, 2_000_000, e_d=0.12)
    res = distill(record, detections, LocalChannel(), intensities=MUS, probabilities=PROBS,
                  rng=rng, reconcile_seed=SEED)
    assert not res.ok and res.alice_key.size == 0
    assert "finite-key" in res.reason or "verification" in res.reason
