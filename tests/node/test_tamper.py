"""A tampered classical-channel frame voids its block, raises an alarm, and the link recovers.

The relay flips one byte of one chosen Alice -> Bob message: it follows the frames of the
stream (:class:`FlipInMessage` reads each frame header as it passes), counts Alice's blocks by
their "prepare" messages, and alters the n-th message of a given meter tag in the chosen block at
a fixed offset of its payload.  So every run alters the same message (not whichever frame byte
200 000 of the stream happened to fall in) and each kind of receiving point is exercised:
Alice's "prepare" (a JSON message the node parses), her Cascade setup (block sizes Bob checks
against the schedule) and her verification points (an array Bob hashes his key with).
"""

import json

import pytest

from controller.channel import _HDR, KIND_DATA, LANE_BLOCK

from .conftest import Pair, wait_until
from .relay import DOWN, Relay

ARRAY_DATA = 14         # payload offset of an 8-byte-dtype 1-D array's data (kind, dtype, ndim, shape)
TAMPER_BLOCK = 1        # the second block of the first session (the first one keys normally)


class FlipInMessage:
    """A relay edit: in the Alice -> Bob stream (Bob dialled the relay), flip ``mask`` into byte
    ``offset`` of the payload of the ``nth`` block-lane message metered as ``tag`` in Alice's
    block ``block`` of the first connection; once.  It forwards whole frames only (the bytes of
    a frame still arriving are held back), so the byte to alter is never already gone."""

    def __init__(self, tag, nth, offset, block=TAMPER_BLOCK, mask=0x40):
        self.tag, self.nth, self.offset, self.block, self.mask = tag.encode(), nth, offset, block, mask
        self.hold = bytearray()
        self.blocks, self.count, self.conns = -1, 0, 0
        self.flipped, self.block_id = False, None

    def __call__(self, direction, data, seen):
        if direction != DOWN:
            return data
        if seen == 0:
            self.conns += 1
            self.hold = bytearray()
        if self.conns > 1 or self.flipped:
            out, self.hold = bytes(self.hold) + data, bytearray()
            return out
        self.hold += data
        out = bytearray()
        while len(self.hold) >= _HDR.size:
            (_, _, kind, _, lane, _, tlen, _, _, _, blen) = _HDR.unpack_from(self.hold)
            size = _HDR.size + tlen + blen + 16
            if len(self.hold) < size:
                break
            frame = self.hold[:size]
            del self.hold[:size]
            if kind == KIND_DATA and lane == LANE_BLOCK and not self.flipped:
                self._edit(frame, tlen, blen)
            out += frame
        if self.flipped:
            out, self.hold = out + self.hold, bytearray()
        return bytes(out)

    def _edit(self, frame, tlen, blen):
        tag = bytes(frame[_HDR.size:_HDR.size + tlen])
        body_at = _HDR.size + tlen
        body = bytes(frame[body_at:body_at + blen])
        if tag == b"node" and body.startswith(b'\x00{"prepare"'):
            self.blocks += 1
            self.count = 0
            if self.blocks == self.block:
                msg = json.loads(body[1:])
                self.block_id = f"{msg['session']}-{msg['prepare']}"
        if self.blocks == self.block and tag == self.tag:
            if self.count == self.nth:
                assert self.offset < blen, (self.offset, blen)
                frame[body_at + self.offset] ^= self.mask
                self.flipped = True
            self.count += 1


@pytest.mark.parametrize("tag, nth, offset", [
    ("node", 0, 2),                   # Alice's "prepare": its JSON no longer parses
    ("ec", 0, ARRAY_DATA + 8),         # Alice's Cascade setup: pass 1's block size
    ("verify", 0, ARRAY_DATA),         # Alice's first verification point
], ids=["prepare", "cascade-setup", "verify-points"])
def test_tampered_message_voids_its_block_and_raises_an_alarm(tag, nth, offset, tmp_path,
                                                              monkeypatch):
    relays = []
    flip = FlipInMessage(tag, nth, offset)
    real_node = Pair._node

    def via_relay(self, role):          # Bob dials the relay, not Alice
        node = real_node(self, role)
        if role == "bob":
            relays.append(Relay(self.alice.address, edit=flip))
            node.connect_to = relays[0].address
        return node

    monkeypatch.setattr(Pair, "_node", via_relay)
    pair = Pair(tmp_path, seed=41, block_slots=120_000)
    try:
        wait_until(lambda: flip.flipped or pair.alice.error or pair.bob.error,
                   f"the relay to flip a byte of the {tag} message", seed=41)
        assert flip.flipped and pair.alice.error is None and pair.bob.error is None, pair.seed
        done = pair.alice.stats.blocks
        pair.wait_blocks(done + 1, "a block after the tampered one")
        assert pair.alice.error is None and pair.bob.error is None, pair.seed
        bob = pair.metrics["bob"].registry.get_sample_value(
            "qkd_disturbance_events_total", {"node": "bob", "kind": "channel_tamper"})
        assert bob == 1, (pair.seed, tag)
        assert pair.bob.stats.void >= 1 and pair.alice.stats.sessions >= 2, pair.seed
        assert any(r["link"] == "channel" for r in pair.bob.stats.recoveries), pair.seed
        # the tampered block is void at Bob and gave no key at either end (Alice may have ended
        # it without a key before Bob's check failed: verification points)
        assert flip.block_id and not [h for h in pair.bob.stats.history if h["block"] == flip.block_id]
        assert not [h for h in pair.alice.stats.history if h["block"] == flip.block_id and h.get("keys")]
    finally:
        pair.close()
        for r in relays:
            r.close()
