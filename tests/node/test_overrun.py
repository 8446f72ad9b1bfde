"""A run that goes on past the block while Alice's stop crosses the link (as on a real board or the
RTL twin): the block is its first ``block_slots`` slots, the rest counts as link time it cost."""

from hil.demo import RecordingAliceBlock

SLOTS = 120_000
LATE = 3_000            # slots Alice's modulator plays between the last choice and the stop


def test_block_is_the_first_n_slots_of_a_longer_run(make_pair, monkeypatch):
    stop = RecordingAliceBlock._stop

    def late_stop(self):
        self._play(LATE)             # the FIFO is empty by now: underflow slots, dark
        stop(self)

    monkeypatch.setattr(RecordingAliceBlock, "_stop", late_stop)
    pair = make_pair(seed=21, block_slots=SLOTS)
    pair.wait_blocks(2)
    for node in (pair.alice, pair.bob):
        done = node.stats.history[:2]
        assert [h["overrun_slots"] for h in done] == [LATE, LATE], (node.name, pair.seed)
        assert [h["slots"] for h in done] == [SLOTS + LATE] * 2, (node.name, pair.seed)
        assert all(h["sifted_bits"] > 1000 for h in done), (done, pair.seed)
    # both ends distilled the same blocks from the same slots (small blocks may give no key)
    ends = [[(h["block"], h["sifted_bits"], h["abort"], h["secret_bits"])
             for h in node.stats.history[:2]] for node in (pair.alice, pair.bob)]
    assert ends[0] == ends[1], (ends, pair.seed)
    assert pair.alice.stats.key_ids == pair.bob.stats.key_ids, pair.seed
