"""KMS fixtures: a development PKI, two KMEs (in-process peers) served over HTTPS with mutual TLS."""

import itertools
import random
from dataclasses import dataclass

import httpx
import pytest

from controller.kms.etsi014 import KMEServer, TLSFiles, client_ssl_context
from controller.kms.kme import KME, KMEConfig, LocalPeerKME
from controller.kms.pki import init_pki
from controller.kms.store import KeyStore

SAES_A, SAES_B = {"sae-a"}, {"sae-b", "sae-c"}


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A development PKI: KMEs alice-kme, bob-kme; SAEs sae-a (at alice), sae-b, sae-c (at bob), unconfigured sae-x."""
    return init_pki(tmp_path_factory.mktemp("pki"), ["alice-kme", "bob-kme"],
                    ["sae-a", "sae-b", "sae-c", "sae-x"])


@pytest.fixture(scope="session")
def foreign_pki(tmp_path_factory):
    """Another CA, with an SAE called sae-a: its certificates must be refused."""
    return init_pki(tmp_path_factory.mktemp("foreign"), [], ["sae-a"])


@dataclass
class Link:
    alice: KME
    bob: KME
    alice_url: str
    bob_url: str
    blocks = itertools.count()

    def fill(self, n_keys, seed=None, key_size=256):
        """Commit one block of ``n_keys`` keys to both stores (same IDs, same bits)."""
        block = f"block-{next(self.blocks)}"
        bits = random.Random(seed if seed is not None else block).randbytes(n_keys * key_size // 8)
        ids = self.alice.store.add_block(block, bits)
        assert self.bob.store.add_block(block, bits) == ids
        return ids

    def drain(self):
        """Make both pools empty (claim every available key)."""
        for kme in (self.alice, self.bob):
            n = kme.store.status().available
            if n:
                kme.store.deliver_claimed(kme.store.claim(n, 8, "drain", "drain"))


def make_link(tmp_path, pki, hybrid=False):
    stores = [KeyStore(tmp_path / f"{n}.db", tmp_path / f"{n}.key", max_key_count=1000)
              for n in ("alice", "bob")]
    alice = KME(KMEConfig("alice-kme", "bob-kme", SAES_A, SAES_B, hybrid=hybrid), stores[0])
    bob = KME(KMEConfig("bob-kme", "alice-kme", SAES_B, SAES_A, hybrid=hybrid, newest_first=True),
              stores[1])
    alice.peer, bob.peer = LocalPeerKME(bob), LocalPeerKME(alice)
    return alice, bob


@pytest.fixture(scope="module")
def link(tmp_path_factory, pki):
    """Two KMEs over HTTPS with mutual TLS on 127.0.0.1; stopped at the end of the module."""
    alice, bob = make_link(tmp_path_factory.mktemp("link"), pki)
    servers = []
    for kme in (alice, bob):
        cert, key = pki.kmes[kme.config.kme_id]
        servers.append(KMEServer(kme, TLSFiles(cert, key, pki.ca_cert)).start())
    yield Link(alice, bob, servers[0].url, servers[1].url)
    for s in servers:
        s.stop()
    for kme in (alice, bob):
        kme.store.close()


@pytest.fixture(scope="module")
def sae_client(pki):
    """Return a function making an httpx client for an SAE of the PKI (or any cert/key)."""
    clients = []

    def make(name, base_url, layout=None):
        layout = layout or pki
        cert, key = layout.saes[name]
        c = httpx.Client(base_url=base_url, verify=client_ssl_context(pki.ca_cert, cert, key),
                         timeout=10)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
