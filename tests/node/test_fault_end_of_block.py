"""A link drop or a node crash at each point of the end-of-block exchange: the nodes recover.

For every point of :data:`controller.node.runner.FAULT_POINTS` the link is dropped there, or the
node is halted there (its thread ends with nothing more saved, as after a crash; it is then
started again from its files), in a block chosen from the seed.  The pair then runs on, and the
test checks: the block was committed on both ends or on neither (as the point implies when it
decides), both stores hold the same key IDs with the same bytes, every key can be delivered once
through the two KMEs' store calls and never again, the pads are in step (the same top-up
generation and pad bytes; the blocks after the fault authenticated), and the time to recover was
measured and exported by the surviving node's metrics.  Boards and distillation are fakes
(``fakes``); the node, channel, pools and stores are the real ones.
"""

import random

import pytest

from controller.kms.store import KeysUnavailable, KeyStore
from controller.metrics import Metrics
from controller.channel import AuthKeyPool

from . import fakes
from .conftest import wait_until

COMMITTED, NOT_COMMITTED, EITHER = "committed", "not committed", "either"

# where the fault is, what it does -> what must become of that block
EXPECT = {
    ("bob:end_sent", "drop"): NOT_COMMITTED, ("bob:end_sent", "halt"): NOT_COMMITTED,
    ("alice:end_received", "drop"): NOT_COMMITTED, ("alice:end_received", "halt"): NOT_COMMITTED,
    ("alice:prepared", "drop"): NOT_COMMITTED, ("alice:prepared", "halt"): NOT_COMMITTED,
    # END_A left Alice: it may or may not have reached Bob before the connection died
    ("alice:end_sent", "drop"): EITHER, ("alice:end_sent", "halt"): EITHER,
    # Bob verified END_A: a drop does not stop him committing; a crash before the commit does
    ("bob:end_received", "drop"): COMMITTED, ("bob:end_received", "halt"): NOT_COMMITTED,
    **{(p, k): COMMITTED for p in ("bob:committed", "bob:topped_up", "bob:committed_sent",
                                   "alice:committed_received", "alice:committed",
                                   "alice:topped_up") for k in ("drop", "halt")},
}
END_POINTS = [p for p in fakes.runner.FAULT_POINTS if not p.endswith(("sync_sent", "sync_answered"))]


class Run:
    """Alice and Bob (fake boards) in this process; a node halted by a fault is started again."""

    def __init__(self, tmp_path, seed, specs):
        self.tmp, self.seed = tmp_path, seed
        self.nodes = {}
        self.faults = [Fault(self.nodes, *spec) for spec in specs]
        self.psk = tmp_path / "psk"
        AuthKeyPool.create_secret_file(self.psk, n_messages=64)
        self.port = fakes.free_port()
        self.folders = {r: tmp_path / r for r in ("alice", "bob")}
        for f in self.folders.values():
            f.mkdir()
        self.metrics = {r: Metrics(r) for r in ("alice", "bob")}
        self.restarts = 0
        for role in ("alice", "bob"):
            self._start(role)

    def _hook(self, role):
        mine = [f for f in self.faults if f.role == role]

        def hook(point, n):
            for f in mine:
                f(point, n)
        return hook

    def _start(self, role):
        node = fakes.make_node(role, str(self.folders[role]), str(self.psk), self.seed,
                               port=self.port, connect_to=("127.0.0.1", self.port),
                               fault_hook=self._hook(role), metrics=self.metrics[role])
        self.nodes[role] = node
        node.start()

    def tend(self):
        """Start again a node whose thread ended (halted); fail on a node error."""
        for role, node in list(self.nodes.items()):
            assert node.error is None, (role, node.error, self.seed)
            if node._thread is not None and not node._thread.is_alive():
                node.stop()                       # frees the listener and the board, saves nothing
                node.store.close()
                self.restarts += 1
                self._start(role)

    def committed(self, role):
        return sorted(b for b, s in fakes.link_blocks(self.folders[role]).items() if s == COMMITTED)

    def run_until(self, cond, what):
        def check():
            self.tend()
            return cond()
        wait_until(check, what, limit_s=90, seed=self.seed)

    def finish(self):
        """Let Alice end the block in flight and start no other; stop both nodes."""
        alice = self.nodes["alice"]
        alice.max_blocks = alice.stats.blocks + 1
        self.run_until(lambda: self.nodes["alice"].stats.blocks >= self.nodes["alice"].max_blocks,
                       "Alice's last block")
        self.close()

    def close(self):
        for node in self.nodes.values():
            node.stop()
            node.store.close()


class Fault(fakes.Fault):
    def __init__(self, run_nodes, role, point, block, kind):
        super().__init__(point, block, kind, node_of=lambda: run_nodes[role])
        self.role = role
        self.block_id = None

    def __call__(self, point, n):
        if self.fired_at is None and point == self.point and (self.block < 0 or n == self.block):
            self.block_id = f"{self.node_of().session}-{n}"
        super().__call__(point, n)


def _scenario(tmp_path, monkeypatch, seed, specs):
    """Run the pair with faults ``specs`` [(role, point, block, kind)]; return the run and faults."""
    fakes.install(monkeypatch, seed)
    run = Run(tmp_path, seed, specs)
    faults = run.faults
    try:
        run.run_until(lambda: all(f.fired_at is not None for f in faults), "the fault(s) to fire")
        base = len(run.committed("alice"))
        run.run_until(lambda: len(run.committed("alice")) >= base + 2,
                      "two blocks committed after the fault")
        run.finish()
    except BaseException:
        run.close()
        raise
    return run, faults


def _check(run, faults, expect):
    seed, folders = run.seed, run.folders
    a_blocks, b_blocks = (fakes.link_blocks(folders[r]) for r in ("alice", "bob"))
    # both commit or both drop: the same committed blocks, nothing left pending, no block
    # committed on one end and dropped on the other
    assert run.committed("alice") == run.committed("bob"), (a_blocks, b_blocks, seed)
    assert "pending" not in a_blocks.values() and "pending" not in b_blocks.values(), seed
    for b, s in a_blocks.items():
        assert b_blocks.get(b, "dropped") == s or s == "dropped" and b not in b_blocks, (b, seed)
    block = faults[0].block_id
    state = {a_blocks.get(block), b_blocks.get(block)}
    if expect == COMMITTED:
        assert state == {"committed"}, (block, state, seed)
    elif expect == NOT_COMMITTED:
        assert "committed" not in state, (block, state, seed)
    assert len(state) == 1 or state <= {None, "dropped"}, (block, state, seed)
    # the stores agree key for key (IDs and bytes); the faulted block's keys are in both or neither
    keys = {r: fakes.key_material(folders[r]) for r in ("alice", "bob")}
    assert keys["alice"] == keys["bob"] and keys["alice"], (len(keys["alice"]), len(keys["bob"]), seed)
    for r in ("alice", "bob"):
        store = KeyStore(folders[r] / "keys.db", folders[r] / "node.key")
        try:
            assert store.integrity_check() == [], (r, seed)
        finally:
            store.close()
    # every key delivered once through both KMEs' store calls, never a second time
    delivered = fakes.deliver_all(folders["alice"], folders["bob"])
    assert delivered.keys() == keys["alice"].keys(), seed
    assert fakes.deliver_all(folders["alice"], folders["bob"]) == {}, seed
    bob = KeyStore(folders["bob"] / "keys.db", folders["bob"] / "node.key")
    try:
        some = sorted(delivered)[:3]
        with pytest.raises(KeysUnavailable):
            bob.reserve_for_slave(some, "sae-a", "sae-b", 256)
    finally:
        bob.close()
    # pads in step: the same number of top-ups, the same pad bytes at the end of each stream
    try:
        gen, compared = fakes.pads_in_step([run.nodes[r].pool for r in ("alice", "bob")])
        files = [AuthKeyPool.from_file(run.psk, state_path=folders[r] / "channel.state")
                 for r in ("alice", "bob")]
        assert files[0].generation == files[1].generation == gen, "state files behind the pools"
    except AssertionError as exc:
        raise AssertionError(f"{exc} (seed {seed})") from None
    assert gen >= 3 and compared > 0, (gen, compared, seed)


def _recovery_measured(run, role):
    reg = run.metrics[role].registry
    n = reg.get_sample_value("qkd_time_to_recover_seconds_count", {"node": role, "link": "channel"})
    s = reg.get_sample_value("qkd_time_to_recover_seconds_sum", {"node": role, "link": "channel"})
    assert n and n >= 1 and s is not None and s > 0, (role, n, s, run.seed)
    return s / n


@pytest.mark.parametrize("kind", ["drop", "halt"])
@pytest.mark.parametrize("point", END_POINTS)
def test_fault_at_each_point_of_the_end_of_block_exchange(tmp_path, monkeypatch, point, kind):
    seed = 7000 + 31 * END_POINTS.index(point) + (kind == "halt")
    block = random.Random(seed).randrange(1, 3)
    role = point.split(":")[0]
    run, faults = _scenario(tmp_path, monkeypatch, seed, [(role, point, block, kind)])
    _check(run, faults, EXPECT[point, kind])
    survivor = "bob" if role == "alice" else "alice"
    _recovery_measured(run, survivor)
    if kind == "drop":
        _recovery_measured(run, role)
    else:
        assert run.restarts == 1, (run.restarts, seed)
    settled = run.metrics["alice"].registry.get_sample_value(
        "qkd_link_blocks_resolved_total", {"node": "alice", "outcome": "committed"}) or 0
    settled += run.metrics["alice"].registry.get_sample_value(
        "qkd_link_blocks_resolved_total", {"node": "alice", "outcome": "dropped"}) or 0
    a_state = fakes.link_blocks(run.folders["alice"]).get(faults[0].block_id)
    if a_state is not None and not (kind == "halt" and role == "alice"):
        # Alice had the block pending when the link went: settled at the reconnection
        assert settled >= 1 or a_state == "committed", (a_state, settled, seed)


@pytest.mark.parametrize("first,expect", [("bob:committed", COMMITTED),
                                          ("alice:prepared", NOT_COMMITTED)])
@pytest.mark.parametrize("second", [("alice", "alice:sync_sent"), ("bob", "bob:sync_answered")])
@pytest.mark.parametrize("kind", ["drop", "halt"])
def test_fault_during_the_resolution(tmp_path, monkeypatch, first, expect, second, kind):
    """A second fault while the half-done block is being settled: settled at the next attempt."""
    seed = 7500 + 7 * ["bob:committed", "alice:prepared"].index(first) + 2 * (second[0] == "bob") \
        + (kind == "halt")
    role = first.split(":")[0]
    run, faults = _scenario(tmp_path, monkeypatch, seed,
                            [(role, first, 1, "drop"), (second[0], second[1], -1, kind)])
    _check(run, faults, expect)
    _recovery_measured(run, "alice" if second[0] == "bob" or kind == "drop" else "bob")
