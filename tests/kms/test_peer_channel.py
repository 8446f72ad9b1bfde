"""Two KMEs agreeing on key IDs over the authenticated classical channel (loopback TCP)."""

import random

import pytest

from controller.channel import open_pair
from controller.kms.hybrid import available as hybrid_available
from controller.kms.kme import KME, ApiError, KMEConfig
from controller.kms.peer_channel import ChannelPeerKME, PeerKMEService
from controller.kms.store import KeyStore


@pytest.fixture(params=[False, True], ids=["qkd", "hybrid"])
def kmes(request, tmp_path):
    hybrid = request.param
    if hybrid and not hybrid_available():
        pytest.skip("this cryptography build has no ML-KEM (needs OpenSSL >= 3.5)")
    stores = [KeyStore(tmp_path / f"{n}.db", tmp_path / f"{n}.key") for n in ("a", "b")]
    alice = KME(KMEConfig("alice-kme", "bob-kme", {"sae-a"}, {"sae-b"}, hybrid=hybrid), stores[0])
    bob = KME(KMEConfig("bob-kme", "alice-kme", {"sae-b"}, {"sae-a"}, hybrid=hybrid,
                        newest_first=True), stores[1])
    ch_a, ch_b = open_pair(random.Random(1).randbytes(16 + 32 * 500), timeout=5)
    alice.peer, bob.peer = ChannelPeerKME(ch_a, timeout=5), ChannelPeerKME(ch_b, timeout=5)
    services = [PeerKMEService(ch_a, alice).start(), PeerKMEService(ch_b, bob).start()]
    block = random.Random(2).randbytes(32 * 10)
    stores[0].add_block("b0", block)
    stores[1].add_block("b0", block)
    yield alice, bob, (ch_a, ch_b)
    for s in services:
        s.stop()
    ch_a.close()
    ch_b.close()
    for s in stores:
        s.close()


def test_agreement_both_directions(kmes):
    alice, bob, _ = kmes
    got = alice.enc_keys("sae-a", "sae-b", 3, 256)["keys"]
    assert bob.dec_keys("sae-b", "sae-a", [k["key_ID"] for k in got])["keys"] == got
    back = bob.enc_keys("sae-b", "sae-a", 2, 128)["keys"]
    assert alice.dec_keys("sae-a", "sae-b", [k["key_ID"] for k in back])["keys"] == back
    assert not {k["key_ID"] for k in got} & {k["key_ID"] for k in back}
    assert alice.store.status().delivered == bob.store.status().delivered == 5


def test_peer_refusal_and_peer_down(kmes):
    alice, bob, (ch_a, ch_b) = kmes
    bob.store.deliver_claimed(bob.store.claim(10, 256, "x", "y"))      # bob's pool gone
    with pytest.raises(ApiError) as info:
        alice.enc_keys("sae-a", "sae-b", 1, 256)
    assert info.value.status == 503 and alice.counters.peer_refusals == 2
    assert alice.store.status().discarded == 2                          # bob lacks them: given up
    assert alice.store.status().available == 8
    ch_b.close()
    alice.peer.timeout = 1
    with pytest.raises(ApiError) as info:
        alice.enc_keys("sae-a", "sae-b", 1, 256)
    assert info.value.status == 503 and "unreachable" in info.value.message
    # outcome unknown: the claimed key is given up, never served again
    assert alice.store.status().reserved_master == 1


def test_https_on_both_kmes_over_the_channel(kmes, pki, sae_client):
    """The whole path: SAE -> HTTPS/mTLS -> KME -> authenticated TCP channel -> peer KME -> SAE."""
    from controller.kms.etsi014 import KMEServer, TLSFiles
    alice, bob, _ = kmes
    servers = [KMEServer(k, TLSFiles(*pki.kmes[k.config.kme_id], pki.ca_cert)).start()
               for k in (alice, bob)]
    try:
        a = sae_client("sae-a", servers[0].url)
        b = sae_client("sae-b", servers[1].url)
        keys = a.post("/sae-b/enc_keys", json={"number": 2, "size": 256}).json()["keys"]
        assert b.post("/sae-a/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]}
                      ).json()["keys"] == keys
        assert b.get("/sae-a/dec_keys", params={"key_ID": keys[0]["key_ID"]}).status_code == 400
        a.close()
        b.close()
    finally:
        for s in servers:
            s.stop()
