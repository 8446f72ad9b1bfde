"""Attenuation sweep: detection rate and QBER against the VOA setting, plotted to a PNG."""

import json

import numpy as np
import pytest

SWEEP_DB = {"model": [0, 2, 4, 6, 8, 10, 13, 16], "rtl": [0, 4, 8], "hw": [0, 3, 6, 10, 15, 20]}


@pytest.mark.long
def test_attenuation_sweep(fresh, target, seed, results_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    bench = fresh
    rows = []
    for att in SWEEP_DB[target]:
        bench.set_attenuation(float(att))
        run = bench.play()
        assert run.reconcile().ok, run.reconcile().problems
        alice, bob, _ = run.sifted(bench.channel_map)
        n = alice.size
        rows.append({"attenuation_db": float(att), "slots": run.slots,
                     "detections": len(run.records),
                     "rate_per_slot": len(run.records) / run.slots,
                     "rate_hz": len(run.records) / run.slots * bench.timebase.slot_hz,
                     "sifted": int(n),
                     "qber": float(np.count_nonzero(alice != bob) / n) if n else None})
    rates = np.array([r["rate_per_slot"] for r in rows])
    assert np.all(np.diff(rates) < 0), f"rate does not fall with loss: {rates.tolist()}"
    # the slope follows the loss: a decade of rate per 10 dB, within statistics and dark counts
    att = np.array([r["attenuation_db"] for r in rows])
    slope = np.polyfit(att, 10 * np.log10(rates), 1)[0]
    assert -1.15 < slope < -0.85, f"rate falls {slope:.3f} dB per dB of attenuation"

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(att, [r["rate_hz"] for r in rows], "o-", label="detection rate")
    ax.set_xlabel("VOA attenuation (dB)")
    ax.set_ylabel("detections per second")
    ax2 = ax.twinx()
    ax2.plot(att, [100 * (r["qber"] or 0) for r in rows], "s--", color="C1", label="QBER")
    ax2.set_ylabel("QBER (%)")
    ax.set_title(f"attenuation sweep ({target}, seed {seed})")
    fig.legend(loc="lower left", bbox_to_anchor=(0.12, 0.15))
    fig.tight_layout()
    png = results_dir / "attenuation_sweep.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    (results_dir / "attenuation_sweep.json").write_text(json.dumps(rows, indent=1))
    assert png.stat().st_size > 1000
