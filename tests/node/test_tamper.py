"""A tampered classical-channel frame voids its block, raises an alarm, and the link recovers."""

import socket
import threading

from .conftest import Pair, wait_until


class FlipRelay:
    """TCP relay to ``target`` that flips one byte of the Alice->Bob stream once, ``after`` bytes in."""

    def __init__(self, target, after):
        self.target, self.after, self.flipped = target, after, False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = self.sock.getsockname()[:2]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                down, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            up = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(down, up, False), daemon=True).start()
            threading.Thread(target=self._pipe, args=(up, down, True), daemon=True).start()

    def _pipe(self, src, dst, from_alice):
        seen = 0
        try:
            while True:
                data = bytearray(src.recv(65536))
                if not data:
                    break
                if from_alice and not self.flipped and seen + len(data) > self.after:
                    data[self.after - seen] ^= 0x40
                    self.flipped = True
                seen += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self._stop.set()
        self.sock.close()


def test_tampered_frame_voids_the_block_and_raises_an_alarm(tmp_path, monkeypatch):
    relays = []
    real_node = Pair._node

    def via_relay(self, role):          # Bob dials the relay, not Alice
        node = real_node(self, role)
        if role == "bob":
            relays.append(FlipRelay(self.alice.address, after=200_000))
            node.connect_to = relays[0].address
        return node

    monkeypatch.setattr(Pair, "_node", via_relay)
    pair = Pair(tmp_path, seed=41, block_slots=120_000)
    try:
        wait_until(lambda: relays and relays[0].flipped, "the relay to flip a byte", seed=41)
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
