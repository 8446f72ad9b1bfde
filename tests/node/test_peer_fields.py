"""The node's own messages from the peer: a malformed field is suspected tampering, not a crash.

Bob's node reads Alice's "prepare" and "run" (untagged, checked only by her end-of-block tag)
and acts on their numbers: each is checked (``PeerInputError``) and the run loop turns the error
on unverified data into :meth:`AuthChannel.suspect` (counted as tampering, block aborted at both
ends, the node goes on).  A "sync" (Bob drops blocks) and a fatal refusal (Alice stops) must come
tagged: an untagged one was altered on the way.  A prepare naming other protocol settings stops
the nodes only if Alice confirms she sent them (her settings in Bob's tagged refusal); else it
was altered, and both count tampering and go on.
"""

import json
import re
import threading
from dataclasses import replace

import pytest

from controller.channel import AuthKeyPool, TamperedMessage, open_pair
from controller.node.runner import ProtocolMismatch, _mismatch_reason
from controller.postprocess.peer import PeerInputError

from .fakes import BLOCK_SLOTS, PROTO, free_port, make_node

SECRET = bytes(range(256)) * 16
GOOD = {"prepare": 0, "session": "0123456789ab", "n_slots": BLOCK_SLOTS, "protocol": PROTO.to_json()}


@pytest.fixture
def link(tmp_path):
    psk = tmp_path / "psk"
    AuthKeyPool.create_secret_file(psk, n_messages=1 << 10)
    made = []

    def make(role):
        node = make_node(role, str(tmp_path / role), psk, seed=3,
                         port=free_port() if role == "alice" else None)
        alice, bob = open_pair(SECRET, timeout=5.0, deferred=True)
        node.channel = alice if role == "alice" else bob
        made.append((node, alice, bob))
        return node, (bob if role == "alice" else alice)

    yield make
    for node, alice, bob in made:
        node._stop.set()
        alice.close()
        bob.close()
        if node._listener is not None:
            node._listener.close()


def _run_once(node):
    """Run the node's loop for one block on its preset channel; return what voided it."""
    failed = []
    node._ensure_channel = lambda: node.channel is not None and not node._stop.is_set()

    def channel_failed(exc):
        failed.append(exc)
        node._stop.set()

    node._channel_failed = channel_failed
    node.run()
    return failed


def _send(end, party, obj, checkpoint=False):
    end.send(party, json.dumps(obj).encode() if not isinstance(obj, bytes) else obj,
             checkpoint=checkpoint)


@pytest.mark.parametrize("prepare, what", [
    ({**GOOD, "prepare": -1}, "block number: expected 0.."),
    ({**GOOD, "prepare": "0"}, "block number: expected an integer"),
    ({**GOOD, "session": "../" * 40}, "session ID"),
    ({**GOOD, "protocol": {"bogus": 1}}, "protocol settings do not parse"),
    ({**GOOD, "n_slots": 0}, "block length"),
    ([1, 2], "JSON object"),
])
def test_a_malformed_prepare_is_suspected_tampering(link, prepare, what):
    bob, alice_end = link("bob")
    _send(alice_end, "alice", prepare)
    with pytest.raises(PeerInputError, match=what):
        bob._bob_block()


def test_bob_run_loop_maps_a_bad_field_to_suspected_tampering(link):
    bob, alice_end = link("bob")
    ch = bob.channel
    _send(alice_end, "alice", GOOD)
    _send(alice_end, "alice", {"run": 0, "played": BLOCK_SLOTS + 1, "overrun": 0})
    failed = _run_once(bob)
    assert len(failed) == 1 and isinstance(failed[0], TamperedMessage), failed
    assert "slots Alice played" in str(failed[0]) and "treated as tampering" in str(failed[0])
    assert ch.counters.tampered == 1 and bob.error is None


def test_an_untagged_sync_is_refused_and_a_tagged_one_answered(link):
    bob, alice_end = link("bob")
    ch = bob.channel
    _send(alice_end, "alice", {"sync": ["feedbeef0000-3"], "gen": 0})
    with pytest.raises(TamperedMessage, match="unauthenticated sync"):
        bob._bob_block()
    assert ch.counters.tampered == 1 and bob.stats.resolved == []
    bob2, alice_end2 = link("bob")
    _send(alice_end2, "alice", {"sync": ["feedbeef0000-3"], "gen": 0}, checkpoint=True)
    bob2._bob_block()
    assert bob2.stats.resolved == [{"block": "feedbeef0000-3", "outcome": "dropped"}]


def test_alice_stops_only_on_a_tagged_refusal_of_her_own_settings(link):
    mine, other = PROTO, replace(PROTO, max_qber=0.07)
    for refusal, checkpoint, raised, what in (
            (_mismatch_reason(mine, BLOCK_SLOTS, other, BLOCK_SLOTS), False, TamperedMessage,
             "unauthenticated fatal refusal"),
            (_mismatch_reason(other, BLOCK_SLOTS, mine, BLOCK_SLOTS), True, TamperedMessage,
             "settings Alice did not send"),
            (_mismatch_reason(mine, 10 * BLOCK_SLOTS, mine, BLOCK_SLOTS), True, TamperedMessage,
             "settings Alice did not send"),
            (_mismatch_reason(mine, BLOCK_SLOTS, other, BLOCK_SLOTS), True, ProtocolMismatch,
             "protocol settings differ")):
        alice, bob_end = link("alice")
        _send(bob_end, "bob", {"ready": False, "fatal": True, "reason": refusal}, checkpoint)
        with pytest.raises(raised, match=re.escape(what)):
            alice._alice_block()
        assert alice.channel.counters.tampered == (raised is TamperedMessage)


@pytest.mark.parametrize("alice_says", ["abort", "close"])
@pytest.mark.parametrize("other, seen", [
    ({"protocol": replace(PROTO, max_qber=0.07).to_json()}, "max_qber=0.07"),
    ({"n_slots": BLOCK_SLOTS - 1}, f"block_slots={BLOCK_SLOTS - 1};"),
])
def test_bob_stops_on_other_settings_only_if_alice_does(link, alice_says, other, seen):
    # other settings in Alice's prepare: her Protocol, or a block length that is not Bob's own
    # (an altered n_slots would otherwise have Bob wait for slots that never come: a board
    # timeout, not tampering)
    bob, alice_end = link("bob")
    _send(alice_end, "alice", {**GOOD, **other})
    out = {}

    def run():
        try:
            bob._bob_block()
        except BaseException as exc:  # noqa: BLE001 - checked below
            out["exc"] = exc

    t = threading.Thread(target=run)
    t.start()
    refusal = json.loads(bytes(alice_end.recv("alice", checkpoint=True)))
    assert refusal["fatal"] and seen in refusal["reason"], refusal
    if alice_says == "abort":            # her prepare was altered: she aborts, Bob goes on
        alice_end.abort_block("malformed data")
    else:                                # the settings do differ: she stops
        alice_end.close()
    t.join(10)
    want = TamperedMessage if alice_says == "abort" else ProtocolMismatch
    assert isinstance(out.get("exc"), want), out
