"""Hybrid QKD + ML-KEM-768: FIPS 203 known answers, sizes, the combiner, and hybrid keys end to end."""

import base64
import hashlib
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey

from controller.kms import hybrid
from controller.kms.kme import ApiError

from .conftest import Link, make_link

pytestmark = pytest.mark.skipif(not hybrid.available(),
                                reason="this cryptography build has no ML-KEM (needs OpenSSL >= 3.5)")
KAT = json.loads((Path(__file__).parent / "vectors" / "mlkem768_kat0.json").read_text())


def test_fips203_known_answer():
    dk = MLKEM768PrivateKey.from_seed_bytes(bytes.fromhex(KAT["d"] + KAT["z"]))
    ek = dk.public_key().public_bytes_raw()
    assert len(ek) == KAT["pk_bytes"] == hybrid.EK_BYTES == 1184
    assert hashlib.sha256(ek).hexdigest() == KAT["pk_sha256"]
    assert KAT["sk_bytes"] == hybrid.DK_BYTES == 2400
    assert hybrid.kem_decapsulate(dk, bytes.fromhex(KAT["ct"])) == bytes.fromhex(KAT["ss"])
    # implicit rejection: a modified ciphertext gives the FIPS 203 pseudo-random secret, no error
    assert hybrid.kem_decapsulate(dk, bytes.fromhex(KAT["ct_n"])) == bytes.fromhex(KAT["ss_n"])


def test_round_trip_sizes_and_bad_inputs():
    dk, ek = hybrid.kem_keypair()
    ss, ct = hybrid.kem_encapsulate(ek)
    assert (len(ek), len(ct), len(ss)) == (1184, 1088, 32)
    assert hybrid.kem_decapsulate(dk, ct) == ss
    with pytest.raises(hybrid.HybridError, match="1184"):
        hybrid.kem_encapsulate(ek[:-1])
    with pytest.raises(hybrid.HybridError, match="1088"):
        hybrid.kem_decapsulate(dk, ct + b"\x00")


def test_combiner_binds_key_id_and_both_inputs():
    q, s = bytes(range(32)), bytes(range(32, 64))
    k = hybrid.combine(q, s, "id-1", "m", "s", 256)
    assert len(k) == 32 and k not in (q, s)
    assert k != hybrid.combine(q, s, "id-2", "m", "s", 256)
    assert k != hybrid.combine(q, bytes(32), "id-1", "m", "s", 256)
    assert k != hybrid.combine(bytes(32), s, "id-1", "m", "s", 256)
    assert hybrid.combine(q, None, "id-1", "m", "s", 128) == q[:16]      # QKD only: a prefix


def test_hybrid_link_delivers_matching_derived_keys(tmp_path, pki):
    alice, bob = make_link(tmp_path, pki, hybrid=True)
    link = Link(alice, bob, "", "")
    ids = link.fill(4, seed=11)
    got = alice.enc_keys("sae-a", "sae-b", 2, 256)["keys"]
    back = bob.dec_keys("sae-b", "sae-a", [k["key_ID"] for k in got])["keys"]
    assert got == back
    block = random.Random(11).randbytes(4 * 32)
    stored = {ids[i]: block[32 * i:32 * i + 32] for i in range(4)}
    for k in got:                                        # the delivered key is not the QKD key
        assert base64.b64decode(k["key"]) != stored[k["key_ID"]]
    assert alice.status("sae-a", "sae-b")["status_extension"]["qkdnode_hybrid"] == "ML-KEM-768"


def test_hybrid_mismatch_refused(tmp_path, pki):
    alice, bob = make_link(tmp_path, pki)
    bob.config.hybrid = True
    Link(alice, bob, "", "").fill(2)
    with pytest.raises(ApiError) as info:
        alice.enc_keys("sae-a", "sae-b", 1, 256)
    assert info.value.status == 503
    assert alice.store.status().available == 2          # refused: claim released
