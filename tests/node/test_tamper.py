"""A tampered classical-channel frame voids its block, raises an alarm, and the link recovers."""

from .conftest import Pair, wait_until
from .relay import DOWN, Relay


class FlipOnce:
    """A relay edit: flip one byte of the Alice->Bob stream (Bob dialled the relay), once,
    ``after`` bytes into a connection."""

    def __init__(self, after):
        self.after, self.flipped = after, False

    def __call__(self, direction, data, seen):
        if direction == DOWN and not self.flipped and seen + len(data) > self.after:
            data = bytearray(data)
            data[self.after - seen] ^= 0x40
            self.flipped = True
        return bytes(data)


def test_tampered_frame_voids_the_block_and_raises_an_alarm(tmp_path, monkeypatch):
    relays = []
    real_node = Pair._node

    def via_relay(self, role):          # Bob dials the relay, not Alice
        node = real_node(self, role)
        if role == "bob":
            relays.append(Relay(self.alice.address, edit=FlipOnce(after=200_000)))
            node.connect_to = relays[0].address
        return node

    monkeypatch.setattr(Pair, "_node", via_relay)
    pair = Pair(tmp_path, seed=41, block_slots=120_000)
    try:
        wait_until(lambda: relays and relays[0].edit.flipped, "the relay to flip a byte", seed=41)
        done = pair.alice.stats.blocks
        pair.wait_blocks(done + 1, "a block after the tampered one")
        bob = pair.metrics["bob"].registry.get_sample_value(
            "qkd_disturbance_events_total", {"node": "bob", "kind": "channel_tamper"})
        assert bob == 1, pair.seed
        assert pair.bob.stats.void >= 1 and pair.alice.stats.sessions >= 2, pair.seed
        assert any(r["link"] == "channel" for r in pair.bob.stats.recoveries), pair.seed
    finally:
        pair.close()
        for r in relays:
            r.close()
