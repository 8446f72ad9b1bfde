"""Alice-to-Bob slot alignment: the host's record of sent choices against Bob's decoded events.
Matching-basis single clicks agree but for the expected QBER; one slot off, they do not."""

import numpy as np


def _qber(alice, bob):
    n = alice.size
    return (np.count_nonzero(alice != bob) / n if n else float("nan")), n


def test_sifted_bits_agree(fresh, target, seed):
    bench = fresh
    run = bench.play()
    alice, bob, intensity = run.sifted(bench.channel_map)
    signal = intensity == 0
    qber, n = _qber(alice[signal], bob[signal])
    assert n > 100, f"only {n} sifted signal bits (seed {seed})"
    sigma = np.sqrt(0.05 * 0.95 / n)
    if bench.simulated:
        e_d = bench.testbed.fibre.config.receiver.misalignment
        assert abs(qber - e_d) < 5 * sigma + 0.005, \
            f"QBER {qber:.4f} on {n} bits, misalignment {e_d} (seed {seed})"
    else:
        assert qber < 0.11, f"QBER {qber:.4f} on {n} sifted signal bits"
    # Bob's slot numbers one off: Alice's bits are unrelated, the error rate is one half.
    for shift in (-1, 1):
        a, b, i = run.sifted(bench.channel_map, shift=shift)
        q, m = _qber(a, b)
        assert m > 50 and abs(q - 0.5) < 5 * np.sqrt(0.25 / m), \
            f"shifted by {shift}: QBER {q:.3f} on {m} bits (seed {seed})"


def test_every_detection_maps_to_a_played_slot(fresh, target):
    bench = fresh
    run = bench.play()
    slots = run.alice_slots()
    first, last = run.sent["slot"][0], run.sent["slot"][-1]
    assert slots.size and slots.min() >= first and slots.max() <= last, \
        f"detections at slots {slots.min()}..{slots.max()}, Alice played {first}..{last}"
    # vacuum slots (laser off) click only with dark counts: far fewer than signal slots
    index = slots - first
    vac = np.count_nonzero(run.sent["intensity"][index] == 2)
    sig = np.count_nonzero(run.sent["intensity"][index] == 0)
    assert vac < 0.05 * sig, f"{vac} detections on vacuum slots, {sig} on signal slots"
