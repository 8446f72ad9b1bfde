"""Prometheus exporter: record figures through the API, scrape the endpoint over HTTP."""

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.kms.kme import KMECounters
from controller.kms.store import PoolStatus
from controller.metrics import Metrics


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    return {(s.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "node"))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.fixture
def clock():
    t = [100.0]
    return t


def test_scrape_every_figure(clock):
    m = Metrics("alice", clock=lambda: clock[0])
    m.record_block(sifted_bits=10_000, secret_bits=2_000, duration_s=4.0, qber_z=0.021, qber_x=0.034,
                   leaked_bits=700, ec_efficiency=1.041, distill_s=0.35)
    m.record_block(sifted_bits=9_000, secret_bits=0, duration_s=4.0, qber_z=0.2, qber_x=0.25,
                   aborted=True, reason="qber")
    m.record_detector_rates({0: 1.5e4, 1: 1.2e4})
    m.record_disturbance("channel_tamper")
    m.link_down("board")
    clock[0] += 2.5
    assert m.link_up("board") == 2.5
    m.link_up("channel")
    m.update_store(PoolStatus(available=250, reserved_master=1, reserved_slave=2, delivered=40,
                              available_bits=64_000, blocks=3, max_key_count=1000))
    m.update_channel({"tampered": 1, "replayed": 0, "reordered": 2, "auth_consumed_bits": 1280,
                      "auth_remaining_bits": {"alice>bob": 4096, "bob>alice": 4224},
                      "blocks_aborted": 3})
    m.update_kme(KMECounters(enc_keys_delivered=7, dec_keys_delivered=5, short_pool=2))
    with m.serve(0) as server:
        assert server.address[0] == "127.0.0.1"
        s = scrape(server.url)
    assert s[("qkd_secure_key_rate_bps", ())] == 0.0             # the last block was aborted
    assert s[("qkd_sifted_bits_total", ())] == 19_000
    assert s[("qkd_secret_bits_total", ())] == 2_000
    assert s[("qkd_reconciliation_leaked_bits_total", ())] == 700     # the aborted block leaked none
    assert s[("qkd_reconciliation_efficiency", ())] == 1.041
    assert s[("qkd_distill_seconds", ())] == 0.35
    assert s[("qkd_qber_ratio", (("basis", "Z"),))] == 0.2
    assert s[("qkd_qber_ratio", (("basis", "X"),))] == 0.25
    assert s[("qkd_blocks_total", (("outcome", "key"),))] == 1
    assert s[("qkd_blocks_total", (("outcome", "aborted"),))] == 1
    assert s[("qkd_disturbance_events_total", (("kind", "qber"),))] == 1
    assert s[("qkd_disturbance_events_total", (("kind", "channel_tamper"),))] == 1
    assert s[("qkd_detector_count_rate_hz", (("channel", "1"),))] == 1.2e4
    assert s[("qkd_link_up", (("link", "board"),))] == 1
    assert s[("qkd_last_time_to_recover_seconds", (("link", "board"),))] == 2.5
    assert s[("qkd_time_to_recover_seconds_count", (("link", "board"),))] == 1
    assert s[("qkd_keystore_fill_ratio", ())] == 0.25
    assert s[("qkd_keystore_available_keys", ())] == 250
    assert s[("qkd_channel_auth_failures", (("kind", "reordered"),))] == 2
    assert s[("qkd_channel_auth_key_remaining_bits", (("direction", "bob>alice"),))] == 4224
    assert s[("qkd_kme_keys_delivered", (("call", "enc_keys"),))] == 7
    assert s[("qkd_kme_requests_failed", (("reason", "short_pool"),))] == 2


def test_key_rate_and_link_down(clock):
    m = Metrics("bob", clock=lambda: clock[0])
    m.record_block(sifted_bits=1000, secret_bits=300, duration_s=2.0, qber_z=0.01)
    m.link_down("peer")
    m.link_down("peer")                       # the first down time counts
    clock[0] += 7
    with m.serve(0) as server:
        s = scrape(server.url)
        assert s[("qkd_secure_key_rate_bps", ())] == 150.0
        assert s[("qkd_link_up", (("link", "peer"),))] == 0
        assert m.link_up("peer") == 7
        assert scrape(server.url)[("qkd_link_up", (("link", "peer"),))] == 1
    assert m.link_up("peer") is None          # was not down
