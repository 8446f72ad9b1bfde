"""ETSI GS QKD 014 conformance over real HTTPS with mutual TLS: two KMEs, four SAE identities."""

import base64
import ssl
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from controller.kms.kme import NOT_FOUND, SIZE_NOT_MULTIPLE

A, B = "sae-a", "sae-b"


@pytest.fixture(scope="module")
def sae(link, sae_client):
    """Clients: sae-a on alice's KME; sae-b, sae-c on bob's; sae-x (unconfigured) on alice's."""
    return {"a": sae_client("sae-a", link.alice_url), "b": sae_client("sae-b", link.bob_url),
            "c": sae_client("sae-c", link.bob_url), "x": sae_client("sae-x", link.alice_url),
            "a@bob": sae_client("sae-a", link.bob_url), "b@alice": sae_client("sae-b", link.alice_url)}


def error(resp, status):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body["message"], str)
    return body


def test_status(link, sae):
    link.drain()
    link.fill(5)
    r = sae["a"].get(f"/{B}/status")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    s = r.json()
    assert s["source_KME_ID"] == "alice-kme" and s["target_KME_ID"] == "bob-kme"
    assert (s["master_SAE_ID"], s["slave_SAE_ID"]) == (A, B)
    assert s["stored_key_count"] == 5 and s["key_size"] == 256 and s["max_key_count"] == 1000
    assert s["max_SAE_ID_count"] == 0 and s["min_key_size"] % 8 == 0 and s["max_key_size"] == 256
    assert "multiple of 8" in s["status_extension"]["qkdnode_size_unit"]


def test_enc_dec_get_and_post_each_key_once_per_side(link, sae):
    link.fill(10)
    got = sae["a"].get(f"/{B}/enc_keys")                                    # GET, defaults
    assert got.status_code == 200
    k1 = got.json()["keys"]
    assert len(k1) == 1 and len(base64.b64decode(k1[0]["key"])) == 32
    uuid.UUID(k1[0]["key_ID"])
    k2 = sae["a"].get(f"/{B}/enc_keys", params={"number": 2, "size": 128}).json()["keys"]
    assert [len(base64.b64decode(k["key"])) for k in k2] == [16, 16]
    k3 = sae["a"].post(f"/{B}/enc_keys", json={"number": 3, "size": 256,
                                                "extension_optional": [{"x_vendor": 1}]}).json()["keys"]
    ids = [k["key_ID"] for k in k1 + k2 + k3]
    assert len(set(ids)) == 6
    # the slave: GET for one key (master's SAE ID in the path), POST for several
    d1 = sae["b"].get(f"/{A}/dec_keys", params={"key_ID": k1[0]["key_ID"]})
    assert d1.status_code == 200 and d1.json()["keys"] == k1
    d2 = sae["b"].post(f"/{A}/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in k2 + k3]})
    assert d2.status_code == 200 and d2.json()["keys"] == k2 + k3
    # once per side: the slave cannot have them again
    again = sae["b"].post(f"/{A}/dec_keys", json={"key_IDs": [{"key_ID": k1[0]["key_ID"]}]})
    assert error(again, 400)["message"] == NOT_FOUND
    # and the master never gets them again: the rest of the pool is all new keys
    rest = sae["a"].post(f"/{B}/enc_keys", json={"number": 4}).json()["keys"]
    assert not {k["key_ID"] for k in rest} & set(ids)


def test_reverse_direction_bob_master(link, sae):
    link.fill(2)
    keys = sae["b"].post(f"/{A}/enc_keys", json={"number": 2}).json()["keys"]
    back = sae["a@bob"]  # sae-a is not an SAE of bob's KME
    assert back.post(f"/{B}/dec_keys", json={"key_IDs": [{"key_ID": keys[0]["key_ID"]}]}).status_code == 401
    got = sae_dec = sae["a"].post(f"/{B}/dec_keys", json={"key_IDs": [{"key_ID": k["key_ID"]} for k in keys]})
    assert sae_dec.status_code == 200 and got.json()["keys"] == keys


def test_bad_parameters_400(link, sae):
    link.drain()
    link.fill(3)
    a = sae["a"]
    assert error(a.get(f"/{B}/enc_keys", params={"size": 100}), 400)["message"] == SIZE_NOT_MULTIPLE
    assert error(a.post(f"/{B}/enc_keys", json={"size": 12}), 400)["message"] == SIZE_NOT_MULTIPLE
    body = error(a.post(f"/{B}/enc_keys", json={"size": 1024}), 400)
    assert "bits" in body["message"] and {"max_key_size": 256} in body["details"]
    error(a.get(f"/{B}/enc_keys", params={"number": 0}), 400)
    error(a.get(f"/{B}/enc_keys", params={"number": "two"}), 400)
    error(a.post(f"/{B}/enc_keys", json={"number": 1000}), 400)
    error(a.post(f"/{B}/enc_keys", json={"number": "1"}), 400)
    error(a.get(f"/{B}/enc_keys", params={"number": 1, "extension_mandatory": "x"}), 400)
    assert error(a.post(f"/{B}/enc_keys", json={"extension_mandatory": [{"x_vendor_foo": 1}]}),
                 400)["message"] == "not all extension_mandatory parameters are supported"
    error(a.post(f"/{B}/enc_keys", json={"additional_slave_SAE_IDs": ["sae-c"]}), 400)
    error(a.post(f"/{B}/enc_keys", json={"nmber": 1}), 400)
    error(a.post(f"/{B}/enc_keys", content=b"{not json", headers={"content-type": "application/json"}), 400)
    error(a.post(f"/{B}/enc_keys", json=[1, 2]), 400)
    error(a.get("/sae-nobody/status"), 400)
    error(a.get("/sae-nobody/enc_keys"), 400)
    b = sae["b"]
    assert error(b.get(f"/{A}/dec_keys", params={"key_ID": "0b6b2f4e-1c1e-4d55-9a6c-3f2d8e7a9b10"}), 400)["message"] == NOT_FOUND
    assert error(b.get(f"/{A}/dec_keys", params={"key_ID": "not-a-uuid"}), 400)["message"] == NOT_FOUND
    error(b.get(f"/{A}/dec_keys"), 400)
    error(b.post(f"/{A}/dec_keys", json={"key_IDs": []}), 400)
    error(b.post(f"/{A}/dec_keys", json={"key_IDs": ["x"]}), 400)
    error(b.delete(f"/{A}/dec_keys"), 400)
    assert link.alice.store.status().available == 3                       # nothing was taken


def test_unauthorised_401(link, sae):
    ids = link.fill(2)
    assert sae["x"].get(f"/{B}/status").status_code == 401               # valid cert, not configured
    assert sae["x"].post(f"/{B}/enc_keys", json={}).status_code == 401
    assert sae["b@alice"].get(f"/{B}/status").status_code == 401          # an SAE of the other KME
    keys = sae["a"].post(f"/{B}/enc_keys", json={"number": 1}).json()["keys"]
    # sae-c is an SAE of bob's KME, but not the slave named in the Get key call
    assert sae["c"].get(f"/{A}/dec_keys", params={"key_ID": keys[0]["key_ID"]}).status_code == 401
    assert sae["b"].get(f"/{A}/dec_keys", params={"key_ID": keys[0]["key_ID"]}).json()["keys"] == keys


def test_short_pool_503(link, sae):
    link.drain()
    link.fill(2)
    body = error(sae["a"].post(f"/{B}/enc_keys", json={"number": 3}), 503)
    assert {"requested": 3} in body["details"]
    assert link.alice.store.status().available == 2                       # claim rolled back


def test_peer_disagreement_503_discards_keys_the_peer_lacks(link, sae):
    link.drain()
    ids = link.fill(3)
    link.bob.store.deliver_claimed(link.bob.store.claim(2, 256, "x", "y"))  # gone on bob's side
    error(sae["a"].post(f"/{B}/enc_keys", json={"number": 1}), 503)         # two tries, both refused
    assert [link.alice.store.key_state(k) for k in ids] == ["discarded", "discarded", "available"]
    got = sae["a"].post(f"/{B}/enc_keys", json={"number": 1}).json()["keys"]  # the pools agree again
    assert got[0]["key_ID"] == ids[2]


def test_concurrent_requests_never_share_a_key(link, sae):
    link.drain()
    link.fill(40)

    def take(_):
        r = sae["a"].post(f"/{B}/enc_keys", json={"number": 2})
        return r.json()["keys"] if r.status_code == 200 else []

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(take, range(24)))
    ids = [k["key_ID"] for b in batches for k in b]
    assert len(ids) == 40 and len(set(ids)) == 40
    d = sae["b"].post(f"/{A}/dec_keys", json={"key_IDs": [{"key_ID": i} for i in ids[:20]]})
    assert d.status_code == 200
    by_id = {k["key_ID"]: k["key"] for b in batches for k in b}
    assert all(by_id[k["key_ID"]] == k["key"] for k in d.json()["keys"])


def test_other_ca_refused_at_tls_layer(link, pki, foreign_pki):
    cert, key = foreign_pki.saes["sae-a"]
    ctx = ssl.create_default_context(cafile=str(pki.ca_cert))
    ctx.load_cert_chain(str(cert), str(key))
    with httpx.Client(base_url=link.alice_url, verify=ctx, timeout=5) as c:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            c.get(f"/{B}/status")
    no_cert = ssl.create_default_context(cafile=str(pki.ca_cert))
    with httpx.Client(base_url=link.alice_url, verify=no_cert, timeout=5) as c:
        with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
            c.get(f"/{B}/status")
