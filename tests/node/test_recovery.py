"""Recovery from a link drop, a board reset and a peer restart, measured in simulated link time."""

import pytest

from .conftest import wait_until

SLOTS = 120_000          # small blocks: these tests are about recovery, not key


def _recovered(node, link):
    return [r for r in node.stats.recoveries if r["link"] == link]


def _check_bounded(pair, node, link):
    recs = _recovered(node, link)
    assert recs, (node.stats.recoveries, pair.seed)
    for r in recs:
        # down at most through the block in flight and the next one, in link time
        assert r["seconds"] <= 2 * pair.block_s + 1e-9, (r, pair.block_s, pair.seed)
        assert r["blocks_lost"] <= 2, (r, pair.seed)


def test_link_drop_reconnects_and_continues(make_pair):
    pair = make_pair(seed=11, block_slots=SLOTS)
    pair.wait_blocks(1)
    done = pair.alice.stats.blocks
    pair.alice.channel.close()                      # the TCP connection dies under both nodes
    pair.wait_blocks(done + 2, "blocks after the link drop")
    assert pair.alice.stats.sessions >= 2 and pair.bob.stats.sessions >= 2
    _check_bounded(pair, pair.alice, "channel")
    _check_bounded(pair, pair.bob, "channel")
    m = pair.metrics["alice"].registry.get_sample_value(
        "qkd_time_to_recover_seconds_count", {"node": "alice", "link": "channel"})
    assert m and m >= 1


@pytest.mark.parametrize("which", ["alice", "bob"])
def test_board_reset_is_recovered(make_pair, which):
    pair = make_pair(seed=12, block_slots=SLOTS)
    pair.wait_blocks(1)
    done = pair.alice.stats.blocks
    pair.bench.reset_board(which)
    pair.wait_blocks(done + 2, f"blocks after {which}'s board reset")
    node = pair.alice if which == "alice" else pair.bob
    _check_bounded(pair, node, "board")
    assert pair.alice.stats.void + pair.bob.stats.void >= 1


def test_peer_restart_is_recovered(make_pair):
    pair = make_pair(seed=13, block_slots=SLOTS)
    pair.wait_blocks(1)
    done = pair.alice.stats.blocks
    pair.bob_again()
    wait_until(lambda: pair.alice.stats.blocks >= done + 2 and pair.bob.stats.blocks >= 1,
               "blocks after Bob's restart", seed=pair.seed)
    assert pair.alice.stats.sessions >= 2
    _check_bounded(pair, pair.alice, "channel")
