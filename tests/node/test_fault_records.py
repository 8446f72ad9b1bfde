"""The pieces the end-of-block recovery stands on: block records, numbered top-ups, the pad limit,
and a HELLO that cannot be replayed or contradicted by the unauthenticated handshake."""

import random
import socket
import threading

import pytest

from controller.channel import (AuthKeyExhausted, AuthKeyPool, ChannelError, ChannelListener,
                                connect)
from controller.kms.store import KeyStore, KeyStoreError

from .relay import UP, Relay

SEED = 9100


def _secret(seed, n_pads=16):
    return random.Random(seed).randbytes(16 + 2 * 16 * n_pads)


def test_block_records_commit_or_drop_once(tmp_path):
    rng = random.Random(SEED)
    store = KeyStore(tmp_path / "keys.db", tmp_path / "node.key")
    try:
        keys, topup = rng.randbytes(32 * 4), rng.randbytes(64)
        store.prepare_block("s-1", keys, topup=topup, gen=1, pool="fp")
        assert store.pending_blocks() == ["s-1"] and store.status().available == 0
        assert store.topups("fp") == []                      # a pending block's top-up is not due
        with pytest.raises(KeyStoreError):
            store.prepare_block("s-1", keys)                 # one record per block
        ids = store.commit_pending("s-1")
        assert len(ids) == 4 and store.commit_pending("s-1") == ids          # idempotent
        assert store.block_state("s-1") == "committed" and store.pending_blocks() == []
        assert store.topups("fp") == [(1, "s-1", topup)] and store.topups("other") == []
        store.forget_topup("s-1")
        assert store.topups("fp") == []
        assert store.drop_block("s-1") == "committed"        # a commit is never undone
        # Bob's side: a block he never committed is recorded dropped and can never be
        assert store.drop_block("s-2") == "dropped"
        with pytest.raises(KeyStoreError, match="dropped"):
            store.commit_block("s-2", keys)
        # Alice's pending block dropped: key and top-up gone, never committed later
        store.prepare_block("s-3", keys, topup=topup, gen=2, pool="fp")
        assert store.drop_block("s-3") == "dropped"
        with pytest.raises(KeyStoreError):
            store.commit_pending("s-3")
        assert store.status().available == 4 and store.integrity_check() == []
        # commit at once (Bob): keys and top-up in one transaction, idempotent
        ids4 = store.commit_block("s-4", keys, topup=topup, gen=2, pool="fp")
        assert store.commit_block("s-4", keys, topup=topup, gen=2, pool="fp") == ids4
        assert [t[:2] for t in store.topups("fp")] == [(2, "s-4")]
    finally:
        store.close()


def test_top_ups_are_numbered_and_applied_once(tmp_path):
    secret = _secret(SEED)
    pool = AuthKeyPool(secret, state_path=tmp_path / "state")
    bits = random.Random(SEED + 1).randbytes(64)
    assert pool.top_up(1, bits) == 512 and pool.generation == 1
    assert pool.top_up(1, bits) == 0                         # repeated after a crash: nothing
    with pytest.raises(ChannelError, match="missing"):
        pool.top_up(3, bits)
    again = AuthKeyPool(secret, state_path=tmp_path / "state")
    assert again.generation == 1 and again.budget().remaining_bits == pool.budget().remaining_bits


def test_a_pool_does_not_send_with_pads_the_peer_lacks():
    secret = _secret(SEED + 2, n_pads=4)
    ahead = AuthKeyPool(secret)
    ahead.top_up(1, random.Random(SEED + 3).randbytes(4 * 32))
    ahead.set_peer_generation(0)                              # the peer did not top up yet
    for _ in range(4):
        ahead.take_send("bob")                                # the 4 pads both hold
    assert ahead.budget().remaining_messages["bob>alice"] == 4
    with pytest.raises(AuthKeyExhausted, match="does not hold"):
        ahead.take_send("bob")
    ahead.note_peer_generation(1)                             # the peer showed it topped up
    assert ahead.take_send("bob")[0] == 4


def _session(listener, pool_b, relay):
    out = {}

    def accept():
        try:
            out["alice"] = listener.accept(timeout=5)
        except Exception as exc:  # noqa: BLE001 - examined by the test
            out["error"] = exc

    t = threading.Thread(target=accept)
    t.start()
    try:
        bob = connect("bob", pool_b, *relay.address, timeout=3)
    except ChannelError as exc:
        bob = exc
    t.join(10)
    return out, bob


def test_a_replayed_hello_is_refused(tmp_path):
    secret = _secret(SEED + 4)
    pool_a = AuthKeyPool(secret, state_path=tmp_path / "a")
    listener = ChannelListener("alice", pool_a, timeout=3)
    relay = Relay(listener.address)
    try:
        out, bob = _session(listener, AuthKeyPool(secret, state_path=tmp_path / "b"), relay)
        assert "alice" in out, out
        out["alice"].close()
        bob.close()
        recorded = bytes(relay.sent)                         # Bob's FLOOR and HELLO
        # a new session: someone replays Bob's recorded handshake to Alice
        out = {}
        t = threading.Thread(target=lambda: out.update(r=_accept(listener)))
        t.start()
        with socket.create_connection(listener.address) as s:
            s.sendall(recorded)
            t.join(10)
        assert isinstance(out["r"], ChannelError) and "replay" in str(out["r"]), out
    finally:
        relay.close()
        listener.close()


def _accept(listener):
    try:
        return listener.accept(timeout=5)
    except ChannelError as exc:
        return exc


def test_a_false_generation_in_the_handshake_is_caught_by_the_hello(tmp_path):
    secret = _secret(SEED + 5)
    listener = ChannelListener("alice", AuthKeyPool(secret), timeout=3)

    def claim_seven(direction, data, seen):          # Bob's FLOOR body: floor, generation
        from controller.channel import _HDR
        if direction != UP or seen:
            return data
        pos = _HDR.size + 8
        return data[:pos] + (7).to_bytes(8, "big") + data[pos + 8:]

    relay = Relay(listener.address, edit=claim_seven)
    try:
        out, bob = _session(listener, AuthKeyPool(secret), relay)
        assert "error" in out and "generation" in str(out["error"]), out
    finally:
        relay.close()
        listener.close()


def test_a_decision_must_come_in_a_tagged_frame():
    """``recv(checkpoint=True)`` (the node's end, committed, sync) refuses an untagged frame."""
    from controller.channel import TamperedMessage, open_pair
    a, b = open_pair(_secret(SEED + 6), timeout=5, deferred=True)
    try:
        a.send("alice", b'{"end": 0}', checkpoint=True)
        assert b.recv("bob", checkpoint=True) == b'{"end": 0}'
        a.send("alice", b'{"committed": 0}')                 # untagged: not a decision
        with pytest.raises(TamperedMessage, match="checkpoint"):
            b.recv("bob", checkpoint=True)
        assert b.counters.tampered == 1
    finally:
        a.close()
        b.close()
