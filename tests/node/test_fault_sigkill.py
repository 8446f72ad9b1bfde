"""SIGKILL at points of the end-of-block exchange: a real kill, then a restart from the files.

One node runs in a child process (``python -m tests.node.test_fault_sigkill ...``) with the fake
boards and distillation of ``fakes``; its fault hook SIGKILLs the process at the chosen point of a
block chosen from the seed, so the SQLite store and the channel state file are left exactly as
they were at that instant (no ``finally``, no goodbye).  It is started again without the fault,
the pair runs two more blocks, and the test checks what the in-process fault tests check: both
commit or both drop, the stores agree key for key, each key is delivered once, the pads are in
step, the surviving node measured the time to recover.
"""

import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from controller.channel import AuthKeyPool
from controller.metrics import Metrics

from . import fakes
from .conftest import wait_until
from .test_fault_end_of_block import COMMITTED, NOT_COMMITTED


def _child_main(role, folder, psk, seed, port, point, block, max_blocks):
    """Run one node until killed (the child process); print ``idle`` after ``max_blocks``."""
    fakes.install(None, int(seed))
    hook = fakes.Fault(point, int(block), "sigkill") if point != "-" else None
    node = fakes.make_node(role, folder, psk, int(seed), port=int(port),
                           connect_to=("127.0.0.1", int(port)), fault_hook=hook)
    if role == "alice" and int(max_blocks) >= 0:
        node.max_blocks = int(max_blocks)
    node.start()
    said = False
    while True:
        if node.error is not None:
            print(f"error {node.error}", flush=True)
            return
        if not said and node.max_blocks is not None and node.stats.blocks >= node.max_blocks:
            print("idle", flush=True)
            said = True
        time.sleep(0.05)


class Child:
    def __init__(self, role, folder, psk, seed, port, point="-", block=0, max_blocks=-1):
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.node.test_fault_sigkill", role, str(folder), str(psk),
             str(seed), str(port), point, str(block), str(max_blocks)],
            cwd=os.getcwd(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.strip())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


CASES = [("bob", "bob:end_received", NOT_COMMITTED),       # killed before his commit: dropped
         ("bob", "bob:committed", COMMITTED),              # committed, pads not topped up yet
         ("bob", "bob:topped_up", COMMITTED),
         ("alice", "alice:prepared", NOT_COMMITTED),       # pending, END_A never sent
         ("alice", "alice:committed_received", COMMITTED),
         ("alice", "alice:committed", COMMITTED)]          # committed, pads not topped up yet


@pytest.mark.parametrize("child_role,point,expect", CASES)
def test_sigkill_at_a_point_of_the_end_of_block_exchange(tmp_path, monkeypatch, child_role, point,
                                                          expect):
    seed = 8100 + 13 * [c[1] for c in CASES].index(point)
    block = random.Random(seed).randrange(1, 3)
    fakes.install(monkeypatch, seed)
    psk = tmp_path / "psk"
    AuthKeyPool.create_secret_file(psk, n_messages=64)
    folders = {r: tmp_path / r for r in ("alice", "bob")}
    for f in folders.values():
        f.mkdir()
    port = fakes.free_port()
    here = "alice" if child_role == "bob" else "bob"
    metrics = Metrics(here)
    node = fakes.make_node(here, str(folders[here]), str(psk), seed, port=port,
                           connect_to=("127.0.0.1", port), metrics=metrics)
    node.start()
    child = Child(child_role, folders[child_role], psk, seed, port, point, block)
    try:
        wait_until(lambda: child.proc.poll() is not None or node.error, "the SIGKILL", 60, seed)
        assert node.error is None, (node.error, seed)
        assert child.proc.returncode == -signal.SIGKILL, (child.proc.returncode, child.lines, seed)
        base = len([s for s in fakes.link_blocks(folders["alice"]).values() if s == "committed"])
        if child_role == "alice":
            child = Child("alice", folders["alice"], psk, seed, port, max_blocks=2)
            wait_until(lambda: "idle" in child.lines or child.proc.poll() is not None,
                       "two blocks after the restart", 60, seed)
            assert "idle" in child.lines, (child.lines, seed)
        else:
            child = Child("bob", folders["bob"], psk, seed, port)
            wait_until(lambda: node.stats.keyed >= base + 2 or node.error or child.proc.poll()
                       is not None, "two blocks after the restart", 60, seed)
            assert node.error is None and child.proc.poll() is None, (node.error, child.lines, seed)
            node.max_blocks = node.stats.blocks + 1
            wait_until(lambda: node.stats.blocks >= node.max_blocks, "Alice's last block", 60, seed)
        pads = None
        if child_role == "bob":
            pads = node.pool
    finally:
        child.kill()
        node.stop()
        node.store.close()
    a_blocks, b_blocks = (fakes.link_blocks(folders[r]) for r in ("alice", "bob"))
    committed = [sorted(b for b, s in d.items() if s == "committed") for d in (a_blocks, b_blocks)]
    assert committed[0] == committed[1] and len(committed[0]) >= base + 2, (a_blocks, b_blocks, seed)
    assert "pending" not in a_blocks.values(), (a_blocks, seed)
    killed = sorted(set(a_blocks) | set(b_blocks))
    # the killed block: the fault fired in session 1's block ``block``; find it by position
    states = {b: (a_blocks.get(b), b_blocks.get(b)) for b in killed}
    if expect == COMMITTED:
        assert all(s[0] == s[1] == "committed" for s in states.values()), (states, seed)
    else:
        dropped = [b for b, s in states.items() if "committed" not in s]
        assert len(dropped) == 1, (states, seed)
    keys = {r: fakes.key_material(folders[r]) for r in ("alice", "bob")}
    assert keys["alice"] == keys["bob"] and keys["alice"], seed
    delivered = fakes.deliver_all(folders["alice"], folders["bob"])
    assert delivered.keys() == keys["alice"].keys(), seed
    assert fakes.deliver_all(folders["alice"], folders["bob"]) == {}, seed
    # pads: both state files at the same top-up generation, ending their streams at the same index
    files = [AuthKeyPool.from_file(psk, state_path=folders[r] / "channel.state")
             for r in ("alice", "bob")]
    assert files[0].generation == files[1].generation >= 3, ([f.generation for f in files], seed)
    assert files[0]._ends[files[0].generation] == files[1]._ends[files[1].generation], seed
    if pads is not None:
        assert pads.generation == files[0].generation, seed
    n = metrics.registry.get_sample_value("qkd_time_to_recover_seconds_count",
                                          {"node": here, "link": "channel"})
    assert n and n >= 1, (n, seed)


if __name__ == "__main__":
    _child_main(*sys.argv[1:])
