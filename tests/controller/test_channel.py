"""Authenticated classical channel over real TCP: metering, Wegman-Carter tags, attacks, budget."""

import os
import random
import socket
import stat
import threading

import numpy as np
import pytest

from controller.channel import (_HDR, P127, AuthKeyExhausted, AuthKeyPool, BlockAborted,
                                ChannelAuthError, ChannelListener, ReorderedMessage, ReplayedMessage,
                                TamperedMessage, TcpChannelPair, connect, open_pair, poly_hash)
from controller.kms.secretfile import SecretFileError
from controller.postprocess.channel import LocalChannel
from controller.postprocess.reconcile import reconcile


def secret(seed, n_pads=200):
    return random.Random(seed).randbytes(16 + 32 * n_pads)


@pytest.fixture
def pair():
    a, b = open_pair(secret(1), timeout=5)
    yield a, b
    a.close()
    b.close()


class Proxy:
    """A man in the middle between bob (client) and alice (listener) that edits bob->alice frames."""

    def __init__(self, listener: ChannelListener, edit):
        self.edit, self.seen = edit, 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self.target = listener.address
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def _frame(conn):
        head = _read(conn, _HDR.size)
        if head is None:
            return None
        f = _HDR.unpack(head)
        return head + _read(conn, f[6] + f[10] + 16)

    def _run(self):
        client, _ = self.sock.accept()
        server = socket.create_connection(self.target)
        threading.Thread(target=self._pipe, args=(server, client), daemon=True).start()
        while (frame := self._frame(client)) is not None:
            for out in self.edit(frame, self.seen):
                server.sendall(out)
            self.seen += 1


    @staticmethod
    def _pipe(src, dst):
        while data := src.recv(65536):
            dst.sendall(data)


def _read(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def proxied_pair(edit, sec=None, deferred=False):
    sec = sec or secret(2)
    listener = ChannelListener("alice", AuthKeyPool(sec), timeout=5, deferred=deferred)
    proxy = Proxy(listener, edit)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("a", listener.accept()), daemon=True)
    t.start()
    bob = connect("bob", AuthKeyPool(sec), *proxy.address, timeout=5, deferred=deferred)
    t.join(5)
    listener.close()
    return got["a"], bob


# frames bob sends through the proxy: 0 FLOOR, 1 HELLO, then data frames from 2 on


def test_payloads_and_metering_match_local_channel(pair):
    a, b = pair
    local = LocalChannel()
    msgs = [("alice", np.array([1, 0, 1, 1], dtype=bool), dict(leaks_key=True, tag="ec")),
            ("alice", np.arange(6, dtype=np.int64).reshape(2, 3), dict(tag="setup")),
            ("bob", np.array([3, 1], dtype=np.int32), dict(bits=64, tag="ec")),
            ("alice", b"\x00\x01raw", {}),
            ("bob", np.zeros(0, dtype=np.uint8), {})]
    for sender, payload, kw in msgs:
        local.send(sender, payload, **kw)
        (a if sender == "alice" else b).send(sender, payload, **kw)
        got = (b if sender == "alice" else a).recv("bob" if sender == "alice" else "alice")
        want = local.recv("bob" if sender == "alice" else "alice")
        if isinstance(want, bytes):
            assert got == want
        else:
            assert got.dtype == want.dtype and np.array_equal(got, want)
    assert a.stats == local.stats and b.stats == local.stats
    with pytest.raises(ValueError, match="alice's"):
        a.send("bob", b"x")


def test_reconciliation_runs_over_tcp_with_same_leakage():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 2, 4000, dtype=np.uint8)
    y = x ^ (rng.random(4000) < 0.03).astype(np.uint8)
    fixed_local, rep_local = reconcile(x, y, 0.03, channel=LocalChannel(), seed=3)
    a, b = open_pair(secret(3, n_pads=4000), timeout=10)
    try:
        fixed_tcp, rep_tcp = reconcile(x, y, 0.03, channel=TcpChannelPair(a, b), seed=3)
    finally:
        a.close()
        b.close()
    assert np.array_equal(fixed_tcp, fixed_local) and np.array_equal(fixed_tcp, x)
    assert rep_tcp == rep_local


def test_poly_hash_is_keyed_and_length_sensitive():
    k = 0x1234567890ABCDEF1234567890ABCDE
    assert poly_hash(k, b"\x00" * 15) != poly_hash(k, b"\x00" * 16)
    assert poly_hash(k, b"abc") != poly_hash(k + 1, b"abc")
    assert 0 <= poly_hash(k, random.Random(9).randbytes(100)) < P127


def wait_for(cond, timeout=5.0):
    done = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if cond():
            return
        done.wait(0.005)
    raise AssertionError("condition not reached")


def tamper_third(frame, n):
    if n == 2:
        frame = bytearray(frame)
        frame[-17] ^= 0x01                    # last payload byte
        return [bytes(frame)]
    return [frame]


def test_tampered_message_aborts_block_on_both_sides():
    a, b = proxied_pair(tamper_third)
    try:
        b.send("bob", b"first block message")
        with pytest.raises(TamperedMessage):
            a.recv("alice")
        assert a.counters.tampered == 1 and a.counters.blocks_aborted == 1
        with pytest.raises(BlockAborted):
            b.recv("bob")                     # alice told bob
        for end in (a, b):                    # the next block goes through
            end.begin_block(1)
        b.send("bob", b"next block")
        assert a.recv("alice") == b"next block"
    finally:
        a.close()
        b.close()


def test_altered_header_is_tampering_not_a_silent_disconnect():
    """A frame whose header no longer parses (here its magic) in an open session: the block is
    aborted as tampered and counted, and then the desynchronised session ends."""
    def break_magic(frame, n):
        if n == 2:
            frame = bytearray(frame)
            frame[0] ^= 0x40
        return [bytes(frame)]

    a, b = proxied_pair(break_magic)
    try:
        b.send("bob", b"first block message")
        with pytest.raises(TamperedMessage):
            a.recv("alice")
        assert a.counters.tampered == 1 and a.counters.blocks_aborted == 1
    finally:
        a.close()
        b.close()


def test_replayed_message_detected():
    a, b = proxied_pair(lambda f, n: [f, f] if n == 2 else [f])
    try:
        b.send("bob", b"pay 1")
        wait_for(lambda: a.counters.replayed == 1)
        with pytest.raises(ReplayedMessage):   # the block is aborted: its messages are dropped
            a.recv("alice")
    finally:
        a.close()
        b.close()


def test_reordered_messages_detected():
    held = []

    def swap(frame, n):
        if n == 2:
            held.append(frame)
            return []
        if n == 3:
            return [frame, held.pop()]
        return [frame]

    a, b = proxied_pair(swap)
    try:
        b.send("bob", b"one")
        b.send("bob", b"two")
        wait_for(lambda: a.counters.replayed == 1)          # "one" arrives late: a replay too
        with pytest.raises(ReorderedMessage):               # the block reports its first error
            a.recv("alice")
        assert a.counters.reordered == 1 and a.counters.blocks_aborted == 1
    finally:
        a.close()
        b.close()


def test_wrong_secret_fails_handshake():
    listener = ChannelListener("alice", AuthKeyPool(secret(4)), timeout=3)
    t = threading.Thread(target=lambda: pytest.raises(ChannelAuthError, listener.accept), daemon=True)
    t.start()
    with pytest.raises(ChannelAuthError):
        connect("bob", AuthKeyPool(secret(5)), *listener.address, timeout=3)
    t.join(5)
    listener.close()


def test_budget_exhaustion_and_replenish():
    a, b = open_pair(secret(6, n_pads=4), timeout=5)        # 4 pads each way, HELLO takes one
    try:
        for i in range(3):
            a.send("alice", bytes([i]))
            assert b.recv("bob") == bytes([i])
        with pytest.raises(AuthKeyExhausted, match="replenish"):
            a.send("alice", b"x")
        assert a.counters.exhausted == 1
        assert a.pool.budget().remaining_messages["alice>bob"] == 0
        extra = random.Random(7).randbytes(64)               # distilled key, same on both ends
        assert a.pool.replenish(extra) == b.pool.replenish(extra) == 512
        a.send("alice", b"after")
        assert b.recv("bob") == b"after"
        budget = a.pool.budget()
        assert budget.replenished_bits == 512 and budget.consumed_bits == 6 * 128   # 5 sent, 1 received
    finally:
        a.close()
        b.close()


def test_secret_file_mode_checked(tmp_path):
    path = AuthKeyPool.create_secret_file(tmp_path / "psk.bin", n_messages=8)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    AuthKeyPool.from_file(path)
    os.chmod(path, 0o640)
    with pytest.raises(SecretFileError, match="expected 0600"):
        AuthKeyPool.from_file(path)


def test_restart_never_reuses_a_pad(tmp_path):
    sec = secret(8, n_pads=300)
    a, b = open_pair(sec, alice_state=tmp_path / "a.state", bob_state=tmp_path / "b.state", timeout=5)
    for i in range(5):
        a.send("alice", bytes([i]))
        b.recv("bob")
    used = a.pool._next_send["alice"]
    a.close()
    b.close()
    assert stat.S_IMODE(os.stat(tmp_path / "a.state").st_mode) == 0o600
    a, b = open_pair(sec, alice_state=tmp_path / "a.state", bob_state=tmp_path / "b.state", timeout=5)
    try:
        assert a.pool._next_send["alice"] > used              # skipped past everything used
        a.send("alice", b"after restart")
        assert b.recv("bob") == b"after restart"
        b.send("bob", b"and back")
        assert a.recv("alice") == b"and back"
    finally:
        a.close()
        b.close()


def test_stale_block_messages_dropped(pair):
    a, b = pair
    b.begin_block(7)
    a.send("alice", b"block 0 leftover")                    # alice still on block 0
    a.begin_block(7)
    a.send("alice", b"block 7")
    assert b.recv("bob") == b"block 7" and b.counters.stale == 1


# -- deferred authentication: one tag covers the transcript since the previous one -------------

def test_deferred_transcript_costs_one_pad_per_checkpoint():
    a, b = open_pair(secret(10, n_pads=8), timeout=5, deferred=True)
    try:
        before = b.pool.budget().remaining_messages["bob>alice"]
        for i in range(40):                                   # 40 untagged frames: no pad each
            b.send("bob", np.full(100, i, dtype=np.int32), leaks_key=i % 2 == 0, tag="ec")
        b.send("bob", b"end of block", checkpoint=True)       # one tag for all 41
        for i in range(40):
            assert np.array_equal(a.recv("alice"), np.full(100, i, dtype=np.int32))
        assert a.recv("alice") == b"end of block"
        assert a.unverified == 0 and a.counters.received == 42          # HELLO + 41
        assert before - b.pool.budget().remaining_messages["bob>alice"] == 1
        assert a.stats == b.stats                             # metering unchanged by deferral
    finally:
        a.close()
        b.close()


def _flip_payload(n_frame):
    def edit(frame, n):
        if n == n_frame:
            frame = bytearray(frame)
            frame[-17] ^= 0x01                                # last payload byte
        return [bytes(frame)]
    return edit


@pytest.mark.parametrize("edit", [_flip_payload(3),                                  # modified
                                  lambda f, n: [f, f] if n == 3 else [f],             # replayed
                                  lambda f, n: [] if n == 3 else [f]],                # removed
                         ids=["modified", "replayed", "removed"])
def test_deferred_frames_are_checked_by_the_next_tag(edit):
    a, b = proxied_pair(edit, deferred=True)
    try:
        for i in range(3):                                    # frames 2, 3, 4 untagged
            b.send("bob", bytes([i]) * 20)
        b.send("bob", b"checkpoint", checkpoint=True)
        with pytest.raises(TamperedMessage, match="does not match"):
            while True:                                       # unauthenticated data comes first
                a.recv("alice")
        assert a.counters.tampered == 1 and a.counters.blocks_aborted == 1
        with pytest.raises(BlockAborted):
            b.recv("bob")
    finally:
        a.close()
        b.close()


def _strip_tag(n_frame):
    def edit(frame, n):
        if n == n_frame:
            frame = bytearray(frame)
            frame[6] &= ~2                                    # clear FLAG_TAGGED in the header
        return [bytes(frame)]
    return edit


@pytest.mark.parametrize("deferred", [False, True])
def test_untagged_frame_refused_where_a_tag_is_required(deferred):
    """Without deferral every frame needs a tag; with it, KME-lane frames still do."""
    a, b = proxied_pair(_strip_tag(2), deferred=deferred)
    try:
        if deferred:
            b.send_on(1, b"reserve keys")
        else:
            b.send("bob", b"block data")
        with pytest.raises(TamperedMessage, match="untagged"):
            a.recv("alice")
        assert a.counters.tampered == 1
    finally:
        a.close()
        b.close()


def test_malformed_unauthenticated_payload_is_tampering():
    def garble(frame, n):
        if n == 2:
            frame = bytearray(frame)
            frame[_HDR.size] = 0x07                           # payload kind byte: no such kind
        return [bytes(frame)]

    a, b = proxied_pair(garble, deferred=True)
    try:
        b.send("bob", np.arange(4))
        with pytest.raises(TamperedMessage, match="does not decode"):
            a.recv("alice")
        assert a.counters.tampered == 1
        with pytest.raises(BlockAborted):
            b.recv("bob")
    finally:
        a.close()
        b.close()
