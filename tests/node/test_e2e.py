"""The node pair end to end on the model boards over loopback TCP, keys through ETSI 014."""

import logging

from hil.demo import run_demo

from .conftest import PROTO


def test_keys_delivered_through_etsi014_match_on_both_sides(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    seed = 21
    r = run_demo(distance_km=0.0, blocks=1, block_slots=2_000_000, keys=4, seed=seed,
                 proto=PROTO, bench_options={"efficiency": 0.6}, workdir=tmp_path,
                 max_wall_s=300)
    assert r.ok, (r.failures, seed)
    assert r.secret_bits > 0 and r.blocks_with_key == 1, (r.history, seed)
    # four keys from Alice's KME (enc_keys) equal to Bob's (dec_keys); a second dec_keys of the
    # same ID was refused inside run_demo (each key once per side)
    assert r.keys_requested == r.keys_delivered == 4 and r.keys_match, seed
    assert r.stores_agree, seed
    assert 0 < r.qber < 0.05, (r.qber, seed)
    # authentication: the first block of a session spends the two HELLO tags, the two
    # end-of-block tags and Bob's tagged "committed", 5 x 128 pad bits, whatever its size; the
    # key of one block at the demo's settings (25 km, n_Z = 1e5, planning model fed with that
    # link) is far more
    block = r.history[0]
    assert block["auth_bits_used"] == r.auth_bits_used == 5 * 128, (block, seed)
    assert block["net_bits"] == block["secret_bits"] - 5 * 128 > 0, (block, seed)
    assert 1.0 < block["ec_efficiency"] < 1.15, (block, seed)     # Cascade, low-round mode
    from hil.demo import SimBench, link_plan
    demo = SimBench(distance_km=25.0, proto=PROTO, seed=seed)
    slots, rate, _ = link_plan(PROTO, demo.optics_model, demo.slot_hz, 100_000)
    assert 5 * 128 < rate * slots / 10, (rate * slots, seed)
    # no key material in any log line, in base64 or hex
    text = "\n".join(rec.getMessage() for rec in caplog.records)
    for side in r.delivered_keys.values():
        for key in side.values():
            import base64
            assert base64.b64encode(key).decode() not in text and key.hex() not in text, seed


def test_intercept_resend_aborts_blocks_with_an_alarm_and_no_key(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    seed = 22
    r = run_demo(distance_km=0.0, blocks=1, block_slots=600_000, eve_fraction=0.3, seed=seed,
                 proto=PROTO, bench_options={"efficiency": 0.3}, workdir=tmp_path, max_wall_s=300)
    assert r.ok, (r.failures, seed)
    assert r.alarms == r.blocks == 1 and r.secret_bits == 0, (r.history, seed)
    assert r.history[0]["abort"] == "qber" and r.history[0]["qber_x"] > PROTO.max_qber, seed
    assert r.keys_requested == 0, seed
    alarms = [rec for rec in caplog.records if "DISTURBANCE ALARM" in rec.getMessage()]
    assert len(alarms) == 2, seed                      # one line on each node, with its figures
    assert "QBER_X" in alarms[0].getMessage()
