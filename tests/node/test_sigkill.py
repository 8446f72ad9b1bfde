"""Bob's node killed with SIGKILL mid-run and restarted: no committed key is lost, the stores agree.

Bob runs in a child process (``python -m tests.node.test_sigkill BOB_URL ...``) so that the kill
is a real one: no ``finally``, no goodbye on the channel, the SQLite store and the channel's pad
state left as they were at that instant.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from controller.channel import AuthKeyPool
from controller.kms.store import KeyStore

from .conftest import LINK_TIMEOUT, PROTO, Pair, wait_until

SLOTS = 1_000_000


def _bob_main(url, host, port, folder, psk, seed):
    """Run Bob's node until killed (the child process)."""
    from controller.node.boards import BobBoard
    from controller.node.runner import Node
    store = KeyStore(os.path.join(folder, "keys.db"), os.path.join(folder, "node.key"))
    pool = AuthKeyPool.from_file(psk, state_path=os.path.join(folder, "channel.state"))
    board = BobBoard(url, slot_period=6, frame_slots=1024, seed=int(seed), link_timeout=LINK_TIMEOUT)
    node = Node("bob", board, PROTO, SLOTS, store, pool, connect_to=(host, int(port)),
                name="bob", timeout_s=20.0, rng_seed=int(seed))
    node.run()


def _spawn(pair, folder):
    host, port = pair.alice.address
    return subprocess.Popen([sys.executable, "-m", "tests.node.test_sigkill", pair.bench.bob_url,
                             host, str(port), str(folder), str(pair.psk), str(pair.seed)],
                            cwd=os.getcwd(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_sigkill_mid_run_loses_no_committed_key(make_pair, tmp_path, monkeypatch):
    real_init = Pair.__init__

    def alice_only(self, tmp, **kw):      # the pair's Bob is the child process, not a thread
        real_init(self, tmp, **kw)
        self.bob.stop()

    monkeypatch.setattr(Pair, "__init__", alice_only)
    pair = make_pair(seed=51, block_slots=SLOTS, efficiency=0.6)
    folder = tmp_path / "bob-child"
    folder.mkdir()
    child = _spawn(pair, folder)
    try:
        wait_until(lambda: pair.alice.stats.keyed >= 2, "two keyed blocks", limit_s=300, seed=51)
        time.sleep(0.5)                   # into the next block
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        before = list(pair.alice.stats.key_ids)
        child = _spawn(pair, folder)
        done = pair.alice.stats.keyed
        wait_until(lambda: pair.alice.stats.keyed >= done + 1, "a keyed block after the restart",
                   limit_s=300, seed=51)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    bob = KeyStore(folder / "keys.db", folder / "node.key")
    try:
        assert bob.integrity_check() == [], pair.seed
        alice_ids = set(pair.alice.stats.key_ids)
        for kid in alice_ids:             # every key Alice committed, Bob holds (he commits first)
            assert bob.key_state(kid) == "available", (kid, pair.seed)
        assert set(before) <= alice_ids
    finally:
        bob.close()


if __name__ == "__main__":
    _bob_main(*sys.argv[1:])
